"""The dependency trap: kubernetes 37 wants python-dateutil>=3, botocore pins <3, and an
unpinned install quietly resolves boto3 0.0.3 from 2014. Our pins must give a modern pair."""

from importlib.metadata import version

from packaging.version import Version


def test_modern_boto3_and_a_compatible_kubernetes_are_installed() -> None:
    assert Version(version("boto3")) >= Version("1.34")
    assert Version(version("botocore")) >= Version("1.34")
    assert Version(version("kubernetes")) < Version("37")
    assert Version(version("python-dateutil")) < Version("3")
