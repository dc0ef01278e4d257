"""memviz: has this diffusion model memorized its training data, where, and why?

Run with ``streamlit run app.py``; it opens on the bundled demo (demo-mnist), offline.
"""

import streamlit as st

st.set_page_config(page_title="memviz", page_icon=":material/search:", layout="wide")

pages = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("app_pages/samples.py", title="Samples", icon=":material/grid_view:"),
    st.Page("app_pages/prompts.py", title="Prompts", icon=":material/chat:"),
    st.Page("app_pages/manifold.py", title="Manifold", icon=":material/scatter_plot:"),
    st.Page("app_pages/detection.py", title="Detection", icon=":material/monitoring:"),
    st.Page("app_pages/mitigation.py", title="Mitigation", icon=":material/healing:"),
]
st.navigation(pages).run()
