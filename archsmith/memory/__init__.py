"""What archsmith remembers: the run store (SQLite), the recorder that fills it as a run goes."""

from archsmith.memory.store import RunStore, StoreError, ToolCallRecord

__all__ = ["RunStore", "StoreError", "ToolCallRecord"]
