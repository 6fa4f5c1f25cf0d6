"""The Streamlit demo and its onnxruntime predictor."""
