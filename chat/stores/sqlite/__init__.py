"""The SQLite store (``--store sqlite:///PATH``): durable history in one file that one process owns.

``schema`` is the file's layout, ``database`` opens (and refuses) files, ``writer`` is the one
writing thread (group commit, retention), ``store`` the Store the feed talks to.
"""
