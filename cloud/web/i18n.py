"""The console's words in Chinese (the default) and English, and how times and numbers are shown."""

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
DEFAULT_TIMEZONE = "Asia/Shanghai"

# key: (Chinese, English). A key missing here is shown as itself, so a gap is visible, not fatal.
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("ClassOps 运维平台", "ClassOps console"),
    "login": ("登录", "Sign in"),
    "logout": ("退出", "Sign out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_failed": ("用户名或密码错误，或账号已停用", "Incorrect username or password, or the account is disabled"),
    "session_expired": ("登录已过期，请重新登录", "Your session has expired; sign in again"),
    "login_throttled": (
        "登录失败次数过多，请 {minutes} 分钟后再试",
        "Too many failed sign-ins; try again in {minutes} min",
    ),
    "csrf_failed": ("页面已过期，请刷新后重试", "The page has expired; reload it and try again"),
    "lang_switch": ("English", "中文"),
    "nav_orders": ("工单", "Orders"),
    "nav_school": ("本校", "My school"),
    "nav_schools": ("学校", "Schools"),
    "nav_alarms": ("告警", "Alarms"),
    "nav_attendance": ("考勤", "Attendance"),
    "nav_roster": ("花名册", "Roster"),
    "nav_county": ("运维看板", "Dashboard"),
    "nav_commands": ("指令", "Commands"),
    "my_orders": ("我的工单", "My work orders"),
    "orders": ("工单", "Work orders"),
    "order": ("工单", "Work order"),
    "sorted_by_sla": ("按 SLA 紧急程度排序", "Sorted by SLA urgency"),
    "status": ("状态", "Status"),
    "all": ("全部", "All"),
    "open_only": ("未完成", "Open"),
    "school": ("学校", "School"),
    "filter": ("筛选", "Filter"),
    "clear": ("清除", "Clear"),
    "none_found": ("没有记录", "Nothing here"),
    "page_of": ("第 {page} / {pages} 页，共 {total} 条", "Page {page} of {pages}, {total} in all"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "priority": ("优先级", "Priority"),
    "due": ("截止", "Due"),
    "overdue": ("已超时", "Overdue"),
    "due_in": ("剩余 {left}", "{left} left"),
    "paused": ("已暂停计时", "Clock paused"),
    "sla_met": ("SLA 达标", "SLA met"),
    "sla_missed": ("SLA 未达标", "SLA missed"),
    "own_due": ("接单截止", "Accept by"),
    "resolve_due": ("解决截止", "Resolve by"),
    "assignee": ("处理人", "Assignee"),
    "team": ("维保队伍", "Team"),
    "created": ("创建时间", "Created"),
    "device": ("设备", "Device"),
    "devices": ("设备", "Devices"),
    "location": ("位置", "Location"),
    "building": ("楼栋", "Building"),
    "classroom": ("教室", "Classroom"),
    "classrooms": ("教室", "Classrooms"),
    "unbound": ("未绑定教室", "Not in a classroom"),
    "latest_health": ("最近健康状态", "Latest health"),
    "last_seen": ("最后在线", "Last seen"),
    "history": ("历史", "History"),
    "device_orders": ("该设备的工单", "Orders on this device"),
    "recent_alarms": ("最近告警", "Recent alarms"),
    "journal": ("处理记录", "Journal"),
    "photos": ("照片", "Photos"),
    "parts_used": ("使用备件", "Parts used"),
    "time_spent": ("用时（分钟）", "Time spent (min)"),
    "actions": ("操作", "Actions"),
    "act_accept": ("接单", "Accept"),
    "act_start": ("开始处理", "Start work"),
    "act_pending": ("挂起", "Put on hold"),
    "act_resume": ("恢复处理", "Resume"),
    "act_resolve": ("完成维修", "Resolve"),
    "act_close": ("确认关闭", "Close"),
    "act_reopen": ("重新打开", "Reopen"),
    "act_cancel": ("撤销", "Cancel order"),
    "act_assign": ("派单", "Assign"),
    "confirm_accept": ("确认接单？", "Accept this order?"),
    "confirm_start": ("确认开始处理？", "Start work on this order?"),
    "confirm_pending": ("确认挂起此工单？SLA 计时将暂停。", "Put this order on hold? The SLA clock pauses."),
    "confirm_resume": ("确认恢复处理？", "Resume work?"),
    "confirm_resolve": ("确认已完成维修？", "Mark this order resolved?"),
    "confirm_close": ("确认关闭工单？", "Close this order?"),
    "confirm_reopen": ("确认重新打开工单？", "Reopen this order?"),
    "confirm_cancel": ("确认撤销此工单？", "Cancel this order?"),
    "confirm_assign": ("确认派单？", "Assign this order?"),
    "confirm_delete": ("确认删除？", "Delete this entry?"),
    "confirm_command": ("确认发送指令？将立即下发到所选设备。", "Send this command now to the devices chosen?"),
    "confirm_report": ("确认提交故障报修？", "Report this fault?"),
    "reason": ("原因", "Reason"),
    "reason_hint": ("例如：等待备件", "e.g. waiting for a spare part"),
    "notes": ("处理说明", "Notes"),
    "notes_hint": ("发现了什么问题，做了什么处理", "What was found and what was done"),
    "part": ("备件", "Part"),
    "quantity": ("数量", "Qty"),
    "photo": ("照片", "Photo"),
    "done": ("已完成", "Done"),
    "saved": ("已保存", "Saved"),
    "working": ("处理中…", "Working…"),
    "failed": ("操作失败", "Failed"),
    "network_error": ("网络错误，请稍后重试", "Network error; try again"),
    "pending_reason": ("挂起原因", "On hold because"),
    "resolution": ("处理结果", "Resolution"),
    "report_fault": ("故障报修", "Report a fault"),
    "report_hint": ("描述故障现象", "Describe what is wrong"),
    "description": ("故障描述", "Description"),
    "impact": ("影响", "Impact"),
    "urgency": ("紧急程度", "Urgency"),
    "level_high": ("高", "High"),
    "level_medium": ("中", "Medium"),
    "level_low": ("低", "Low"),
    "submit": ("提交", "Submit"),
    "reported": ("已提交报修，工单 #{id}", "Fault reported: order #{id}"),
    "presence": ("在线状态", "Presence"),
    "role": ("类型", "Role"),
    "asset_tag": ("资产编号", "Asset tag"),
    "model": ("型号", "Model"),
    "firmware": ("固件", "Firmware"),
    "uptime": ("运行时长", "Uptime"),
    "heap_free": ("空闲内存", "Free heap"),
    "rssi": ("Wi-Fi 信号", "Wi-Fi RSSI"),
    "reset_reason": ("重启原因", "Reset reason"),
    "alarms": ("告警", "Alarms"),
    "alarm_code": ("告警", "Alarm"),
    "alarm_state": ("状态", "State"),
    "state_raise": ("触发", "Raised"),
    "state_clear": ("恢复", "Cleared"),
    "time": ("时间", "Time"),
    "detail": ("详情", "Detail"),
    "attendance": ("考勤", "Attendance"),
    "date": ("日期", "Date"),
    "present": ("到课", "Present"),
    "enrolled": ("应到", "Enrolled"),
    "rate": ("出勤率", "Rate"),
    "taps": ("刷卡次数", "Taps"),
    "class": ("班级", "Class"),
    "show": ("查看", "Show"),
    "roster": ("花名册", "Roster"),
    "card": ("卡号（化名）", "Card (pseudonym)"),
    "person_name": ("姓名", "Name"),
    "person_no": ("学号/工号", "Number"),
    "add": ("添加", "Add"),
    "delete": ("删除", "Delete"),
    "import_file": ("导入 CSV/XLSX", "Import CSV/XLSX"),
    "import_done": (
        "导入完成：新增 {created}，更新 {updated}，错误 {errors}",
        "Imported: {created} new, {updated} updated, {errors} errors",
    ),
    "dashboard": ("运维看板", "O&M dashboard"),
    "online_rate": ("在线率", "Online rate"),
    "fault_rate": ("故障率", "Fault rate"),
    "mttr": ("平均修复时间", "MTTR"),
    "sla_compliance": ("SLA 达标率", "SLA compliance"),
    "coverage": ("智慧黑板覆盖率", "Blackboard coverage"),
    "coverage_target": ("目标 100%", "target 100%"),
    "blackboard_usage": ("黑板日均使用", "Blackboard use per day"),
    "hours": ("小时", "h"),
    "of_devices": ("{n} 台设备", "{n} devices"),
    "of_orders": ("{n} 个已解决工单", "{n} resolved orders"),
    "of_classrooms": ("{n} 间教室", "{n} classrooms"),
    "of_boards": ("{n} 块黑板", "{n} boards"),
    "trend": ("趋势（近 {days} 天）", "Trend (last {days} days)"),
    "opened": ("新建工单", "Orders opened"),
    "resolved_n": ("已解决工单", "Orders resolved"),
    "per_school": ("各校情况", "Schools"),
    "scorecards": ("维保队伍考核", "Contractor scorecards"),
    "open_orders": ("未完成工单", "Open orders"),
    "overdue_orders": ("超时工单", "Overdue"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "export_xlsx": ("导出 Excel", "Export Excel"),
    "online": ("在线", "Online"),
    "offline": ("离线", "Offline"),
    "unknown": ("未知", "Unknown"),
    "commands": ("远程指令", "Commands"),
    "send_command": ("发送指令", "Send a command"),
    "command": ("指令", "Command"),
    "target": ("对象", "Target"),
    "target_school": ("整所学校", "Whole school"),
    "target_classroom": ("教室", "Classroom"),
    "only_role": ("设备类型", "Device role"),
    "any_role": ("全部类型", "Every role"),
    "sent_by": ("发送人", "Sent by"),
    "command_sent": ("指令已排队：{n} 台设备", "Command queued for {n} devices"),
    "recent_commands": ("最近指令", "Recent commands"),
    "cmd_power_off": ("黑板关机", "Blackboards off"),
    "cmd_power_on": ("黑板开机", "Blackboards on"),
    "cmd_reboot": ("重启", "Reboot"),
    "notifications": ("通知", "Notifications"),
    "not_found": ("找不到该页面或无权访问", "Not found, or not yours to see"),
    "forbidden": ("无权执行此操作", "You may not do this"),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回", "Back"),
    "live": ("实时", "Live"),
    "role_county_admin": ("县级管理员", "County admin"),
    "role_school_admin": ("学校管理员", "School admin"),
    "role_technician": ("技术员", "Technician"),
    "role_contractor_manager": ("维保经理", "Contractor manager"),
    "role_auditor": ("审计员", "Auditor"),
    "st_new": ("新建", "New"),
    "st_assigned": ("已派单", "Assigned"),
    "st_accepted": ("已接单", "Accepted"),
    "st_in_progress": ("处理中", "In progress"),
    "st_pending": ("挂起", "On hold"),
    "st_resolved": ("已解决", "Resolved"),
    "st_closed": ("已关闭", "Closed"),
    "st_cancelled": ("已撤销", "Cancelled"),
    "role_sensor": ("环境传感器", "Sensor"),
    "role_attendance": ("考勤终端", "Attendance"),
    "role_blackboard": ("智慧黑板", "Blackboard"),
    "cs_queued": ("排队", "queued"),
    "cs_sent": ("已发送", "sent"),
    "cs_delivered": ("已送达", "delivered"),
    "cs_succeeded": ("成功", "succeeded"),
    "cs_failed": ("失败", "failed"),
    "cs_expired": ("过期", "expired"),
}


def normalise(lang: str | None) -> str:
    """A supported language for a cookie's or header's value."""
    if lang in LANGUAGES:
        return lang
    return DEFAULT_LANGUAGE


def translate(lang: str, key: str, **values: object) -> str:
    """The message `key` in `lang`, with {placeholders} filled in."""
    pair = MESSAGES.get(key)
    text = key if pair is None else pair[0 if lang == "zh-CN" else 1]
    return text.format(**values) if values else text


def zone(name: str | None) -> ZoneInfo:
    """The school's time zone; the design's default when it is missing or unknown."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def local_time(moment: datetime | None, timezone: str | None) -> str:
    """A stored UTC time as people at the school read it: 2026-01-05 08:30."""
    if moment is None:
        return "—"
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M")


def duration(seconds: float, lang: str) -> str:
    """A span as days, hours or minutes, coarse enough for a glance."""
    seconds = abs(seconds)
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} 分钟" if lang == "zh-CN" else f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} 小时 {minutes % 60} 分" if lang == "zh-CN" else f"{hours} h {minutes % 60} min"
    return f"{hours // 24} 天 {hours % 24} 小时" if lang == "zh-CN" else f"{hours // 24} d {hours % 24} h"


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal; a dash when there is nothing to divide."""
    return "—" if value is None else f"{value * 100:.1f}%"
