"""Properties of the exported fused graph that the GPU engines rely on."""

import onnx
import pytest

from engines.multitask import MultiTaskNet, NetConfig


@pytest.mark.parametrize("heads", [("emotion",), ("emotion", "gender", "age")])
def test_uint8_input_feeds_a_cast_directly_and_the_batch_is_dynamic(heads):
    """TensorRT accepts a UINT8 network input only where a Cast consumes it."""
    model = onnx.load(str(MultiTaskNet(NetConfig(heads=heads)).onnx_path))
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic: any batch size
    consumers = [n.op_type for n in model.graph.node if inp.name in n.input]
    assert consumers == ["Cast"]
