import pytest

from engine.planning.gpus import DEFAULT_GPU, GPU_TABLE, gpu_spec, gpu_specs, peer_gpu_spec

REQUIRED = ["H100 80GB", "A100 80GB", "A100 40GB", "L40S", "RTX 6000 Ada", "RTX A6000",
            "RTX 4090", "RTX 3090", "L4", "A10G", "T4", "RTX 4080", "V100 32GB"]


def test_every_required_gpu_is_in_the_table_and_finds_itself():
    for name in REQUIRED:
        assert gpu_spec(name) == GPU_TABLE[name]
        assert gpu_specs(name) == (GPU_TABLE[name].tflops, GPU_TABLE[name].power_w)
        assert all(v > 0 for v in GPU_TABLE[name])


@pytest.mark.parametrize(("nvml_name", "key"), [
    ("NVIDIA H100 80GB HBM3", "H100 80GB"),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 4080", "RTX 4080"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
    ("NVIDIA RTX A6000", "RTX A6000"),
    ("Tesla T4", "T4"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("Tesla V100-SXM2-32GB", "V100 32GB"),
    ("a10g", "A10G"),
    # These three fell back to the mid-range default (an H200 timed as a fifth of an H100).
    ("NVIDIA H200", "H200"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA A10", "A10"),
])
def test_nvml_style_names_match_their_row(nvml_name, key):
    assert gpu_spec(nvml_name) == GPU_TABLE[key]


def test_unknown_and_missing_names_get_the_documented_default():
    assert gpu_spec(None) == DEFAULT_GPU
    assert gpu_spec("") == DEFAULT_GPU
    assert gpu_spec("Radeon RX 7900") == DEFAULT_GPU


def test_a_peers_own_figures_override_the_table():
    spec = peer_gpu_spec("T4", tflops=10.0, power_w=None)
    assert spec.tflops == 10.0 and spec.power_w == GPU_TABLE["T4"].power_w
    assert peer_gpu_spec(None, None, 123.0).power_w == 123.0
