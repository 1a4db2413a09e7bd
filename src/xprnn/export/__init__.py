"""Export trained models to run without Python's xprnn: :func:`to_onnx` writes a
:class:`~xprnn.SequenceClassifier` or a :class:`~xprnn.LanguageModel` as an ONNX graph on the
native ``RNN``, ``LSTM`` and ``GRU`` operators, for ONNX Runtime in C++, C#, Java, JavaScript or
on mobile. Needs the ``onnx`` package (``pip install 'xprnn[onnx]'``), imported only when
exporting.
"""

from .onnx import CELLS, IR_VERSION, OPSET, to_onnx

__all__ = ["to_onnx", "CELLS", "OPSET", "IR_VERSION"]
