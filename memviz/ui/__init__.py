"""Streamlit helpers: cached loaders and widgets. The only part of memviz that imports streamlit. Pages call it; it may import
every layer of the library, and the library never imports it."""
