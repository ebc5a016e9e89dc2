"""SQL statements kept whole in .sql files beside the module that runs them, each read once."""
from functools import cache
from pathlib import Path


@cache
def sql_statement(module_file: str, name: str) -> str:
    """The text of `sql/<name>.sql` in the folder of `module_file` (pass the caller's `__file__`)."""
    return (Path(module_file).parent / "sql" / f"{name}.sql").read_text()
