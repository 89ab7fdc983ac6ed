"""The workspace store: one GeoPackage of records per workspace directory."""

from sitewatch.store.schema import LAYERS, SCHEMA_VERSION
from sitewatch.store.workspace import GPKG_NAME, Transaction, Workspace

__all__ = ["GPKG_NAME", "LAYERS", "SCHEMA_VERSION", "Transaction", "Workspace"]
