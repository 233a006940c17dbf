"""The Streamlit monitoring dashboard; it reads the store and nothing else."""
