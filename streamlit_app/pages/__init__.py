"""The web app's pages, one file each; streamlit_app/app.py registers them (st.navigation)."""
