"""Persistence: the SQLite database with its migrations, the blob store for files, and
storage.ports, the interfaces (repository, job queue) the core uses them through."""

from storage.blobs import BlobStore, LocalBlobStore
from storage.database import Database
from storage.repository import NewPhoto, Repository

__all__ = ["BlobStore", "Database", "LocalBlobStore", "NewPhoto", "Repository"]
