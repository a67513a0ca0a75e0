"""`python -m fashion_fastai.export RUN_DIR`: every model of a run as ONNX, to ship where PyTorch is not installed.

The command lives here; its work is in `fashion_fastai.shipped.onnx_export`."""
from fashion_fastai.cli import as_command
from fashion_fastai.shipped.onnx_export import main

if __name__ == '__main__':
    as_command('export')
    main()
