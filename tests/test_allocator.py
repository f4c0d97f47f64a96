import subprocess
import sys

from vae_lib import allocator


def test_tune_malloc_reports_the_applied_thresholds_on_glibc():
    result = allocator.tune_malloc()
    if not result:  # not glibc: nothing to check but that it is harmless
        assert allocator.applied() in (None, {})
        return
    assert result["mmap_threshold"] == 32 * 1024 * 1024
    assert result["trim_threshold"] == 2**31 - 1
    assert allocator.applied() == result


def test_import_applies_it_unless_opted_out():
    code = "import vae_lib, vae_lib.allocator as a; print(a.applied() is not None)"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"VAE_LIB_NO_MALLOPT": "1", "PATH": ""})
    assert on.stdout.strip() == "True"
    assert off.stdout.strip() == "False"
