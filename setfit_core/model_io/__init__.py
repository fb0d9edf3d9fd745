"""Reading and writing models: the body (`body_loading`), the SetFit directory format (`setfit_format`) and
scikit-learn heads saved without pickle (`sklearn_head`: skops, plus the reader of the earlier JSON format)."""
