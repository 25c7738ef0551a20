"""The three classroom roles. Only the configured role's module is imported, to spare the heap.

A role is built from its Device and offers:

    tasks()                      (name, coroutine function) pairs run beside the device's own
    async command(name, args)    (result, detail) for the commands it owns, None for the others
    async selftest()             None when its hardware answers, else what is wrong
"""


def create(device):
    """The role object for `device.cfg["role"]`."""
    role = device.cfg["role"]
    if role == "sensor":
        from app.roles.sensor import SensorNode

        return SensorNode(device)
    if role == "blackboard":
        from app.roles.blackboard import BlackboardController

        return BlackboardController(device)
    from app.roles.attendance import AttendanceTerminal

    return AttendanceTerminal(device)
