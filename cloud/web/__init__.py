"""The web console: server-rendered pages for technicians, school admins and county staff."""
