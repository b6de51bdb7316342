import json
import subprocess
import sys

from typer.testing import CliRunner

from fpforensics import __version__
from fpforensics.cli.app import app

runner = CliRunner()


def test_help_lists_every_command():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("synthesize", "train", "embed", "gallery", "identify", "verify", "cluster", "ffd", "artifact", "eval"):
        assert cmd in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_help_does_not_import_torch():
    code = "import sys; from fpforensics.cli.app import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ffd_json_and_device_line(model_set_dir):
    res = runner.invoke(app, ["--device", "cpu", "ffd", str(model_set_dir), str(model_set_dir), "-n", "3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ffd"] < 1e-6 and data["models_a"] == 3 and data["images_per_model"] == 3
    assert "device: cpu" in res.stderr


def test_bad_input_is_one_line_exit_2(tmp_path):
    res = runner.invoke(app, ["ffd", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 2
    assert "error:" in res.stderr and "Traceback" not in res.output + res.stderr


def test_unknown_device_is_clear_error(model_set_dir):
    res = runner.invoke(app, ["--device", "tpu", "ffd", str(model_set_dir), str(model_set_dir)])
    assert res.exit_code == 2 and "unknown device" in res.stderr


def test_quiet_hides_messages(model_set_dir):
    res = runner.invoke(app, ["-q", "--device", "cpu", "ffd", str(model_set_dir), str(model_set_dir), "-n", "2"])
    assert res.exit_code == 0 and "device:" not in res.stderr and "FFD" in res.stdout


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_help_shows_every_default_and_reads_like_prose():
    """Every option shows its default (or is required), usage lines name arguments plainly, flags have no type."""
    import typer
    from typer.core import TyperOption

    group = typer.main.get_command(app)
    seen = 0
    for path, cmd in _commands(group):
        for p in cmd.params:
            if isinstance(p, TyperOption) and not p.is_flag and not p.required and p.name != "help":
                assert p.default is not None or isinstance(p.show_default, str), (path, p.name)
                assert p.help and p.help.strip(), (path, p.name)
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, path
        usage = next(line for line in res.stdout.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<" not in usage, usage
        assert "<bool>" not in res.stdout and "[default: (None)]" not in res.stdout, path
        seen += 1
    assert seen >= 13
