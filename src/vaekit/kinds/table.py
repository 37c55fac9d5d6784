"""The table kind (in progress)."""

from . import Kind


class TableKind(Kind):
    name = "table"

    def detect(self, name: str) -> bool:
        return name.lower().endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet"))
