"""Streamlit-side helpers shared by the pages (caching, pickers, messages). No computation here."""
