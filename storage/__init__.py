"""Persistence: the SQLite database with its migrations, and the blob store for files."""

from storage.blobs import BlobStore, LocalBlobStore
from storage.database import Database
from storage.repository import NewPhoto, Repository

__all__ = ["BlobStore", "Database", "LocalBlobStore", "NewPhoto", "Repository"]
