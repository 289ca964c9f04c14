"""The reference social platform: accounts (and, later, posts, follows, blocks, assistant chats)."""
