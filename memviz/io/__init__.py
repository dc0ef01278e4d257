"""The boundary and the disk: what a file or path must satisfy before memviz opens it
(``guard``: sizes declared before reading, allowed roots, prompts), atomic writes and checked
``.npz`` files (``files``), the content-keyed on-disk store every expensive artifact lives in
(``cache``), and where the bundled demos are (``assets``).

The bottom layer: it imports nothing else of memviz, and everything above may import it.
"""
