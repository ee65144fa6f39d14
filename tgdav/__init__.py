"""tgdav: Telegram channels as a WebDAV drive."""

__version__ = "0.1.0"
