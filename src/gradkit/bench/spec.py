"""The spec grammar the arena uses; it lives in :mod:`gradkit.spec`, shared with ``gradkit.memory``."""
from gradkit.spec import (  # noqa: F401
    ENTRY_POINT_GROUP,
    LIBRARY_MODULES,
    Spec,
    build_optimizer,
    format_value,
    optimizer_libraries,
    parse_spec,
    parse_sweep,
    parse_value,
    resolve_optimizer,
)
from gradkit.spec import __all__  # noqa: F401
