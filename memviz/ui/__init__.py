"""Streamlit helpers: cached loaders and widgets. The only part of memviz that imports streamlit."""
