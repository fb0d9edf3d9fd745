"""Reading and writing models: the body (`body_loading`), the SetFit directory format (`setfit_format`) and
scikit-learn heads as safe JSON + safetensors (`sklearn_head`)."""
