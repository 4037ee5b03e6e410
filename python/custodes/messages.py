"""Report labels in Chinese and English, from one catalogue."""

from __future__ import annotations

LANGUAGES = ("zh", "en")

CATALOGUE: dict[str, tuple[str, str]] = {
    "title": ("执法音像记录合规报告", "Compliance report on enforcement recordings"),
    "archive": ("档案库", "Archive"),
    "period": ("统计期间", "Period"),
    "scope": ("范围", "Scope"),
    "generated": ("生成时间", "Generated"),
    "checkpoint": ("账本检查点", "Ledger checkpoint"),
    "integrity": ("完整性", "Integrity"),
    "completeness": ("完整记录", "Completeness"),
    "clocks": ("设备时钟", "Device clocks"),
    "timeliness": ("及时存储", "Timeliness"),
    "retention": ("保存期限", "Retention"),
    "access": ("调阅与导出", "Access and export"),
    "concerns": ("第二十五条关注事项", "Article 25 concerns"),
    "timelines": ("时间轴", "Timelines"),
    "segments": ("录像文件数", "Recordings"),
    "objects_checked": ("已校验对象", "Objects checked"),
    "integrity_findings": ("完整性问题", "Integrity findings"),
    "never_verified": ("从未校验", "Never verified"),
    "gaps": ("中断", "Gaps"),
    "unexplained_gaps": ("未说明的中断", "Unexplained gaps"),
    "sequence_breaks": ("文件序号缺失", "Sequence breaks"),
    "internal_gaps": ("文件内中断", "Gaps inside files"),
    "task_coverage": ("执法任务覆盖率", "Task coverage"),
    "two_device": ("双设备覆盖", "Two-device coverage"),
    "clock_unset": ("时钟未设置", "Clock not set"),
    "clock_future": ("时钟超前", "Clock in the future"),
    "name_time_mismatch": ("文件名时间不符", "Name/container time mismatch"),
    "max_offset": ("最大偏差(秒)", "Largest offset (s)"),
    "device": ("设备", "Device"),
    "ingests": ("导入次数", "Ingests"),
    "late_ingest": ("超时导入", "Late ingests"),
    "delay_median": ("延迟中位数(小时)", "Median delay (h)"),
    "delay_max": ("最大延迟(小时)", "Longest delay (h)"),
    "due": ("已到期", "Due"),
    "held": ("保全中", "On hold"),
    "long_term": ("长期保存", "Long-term"),
    "purged": ("已依法删除", "Lawfully purged"),
    "requests": ("调阅申请", "Requests"),
    "approved": ("已批准", "Approved"),
    "denied": ("已拒绝", "Denied"),
    "refusals": ("被拒绝的访问", "Refused accesses"),
    "views": ("查看", "Views"),
    "exports": ("导出", "Exports"),
    "article": ("条款", "Article"),
    "count": ("数量", "Count"),
    "kind": ("类型", "Kind"),
    "page": ("第", "Page"),
    "recorded": ("已录制", "Recorded"),
    "task_window": ("任务时段", "Task window"),
    "explained_gap": ("已说明的中断", "Explained gap"),
    "concern_deleted": ("删除或丢失证据", "Evidence deleted or lost"),
    "concern_not_recorded": ("未按要求记录", "Not recorded as required"),
    "concern_unapproved": ("未经批准的访问或导出", "Access or export without approval"),
    "concern_altered": ("记录被篡改或伪造", "Recordings altered or falsified"),
    "concern_damaged": ("记录损坏", "Recordings damaged"),
    "none": ("无", "none"),
}


def label(key: str, lang: str) -> str:
    zh, en = CATALOGUE[key]
    return zh if lang == "zh" else en
