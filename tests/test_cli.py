import subprocess
import sys


from tests.cli import invoke as run


def test_list_shows_models_with_params_and_macs():
    result = run("list", "resnet*")
    assert result.exit_code == 0, result.output
    assert "resnet50" in result.output and "25,557,032" in result.output and "4.09" in result.output
    assert "densenet" not in result.output


def test_list_with_no_match_is_an_error():
    result = run("list", "nothing*")
    assert result.exit_code == 2 and "no model matches" in result.output


def test_info_shows_spec_and_stages():
    result = run("info", "mobilenet")
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2" in result.output and "3,504,872" in result.output
    assert "features.18" in result.output and "1280x7x7" in result.output


def test_info_respects_input_size_and_minimum():
    assert "64x2x2" in run("info", "cifar_resnet20", "--input-size", "8").output
    result = run("info", "inception_v3", "--input-size", "32")
    assert result.exit_code == 2 and "at least 75x75" in result.output


def test_unknown_model_exits_2_with_suggestions_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "deploykit", "info", "mobilenetv2"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]] and "did you mean" in proc.stderr and "mobilenet_v2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_script_is_installed():
    proc = subprocess.run(["deploykit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "list" in proc.stdout and "info" in proc.stdout
