"""#SBATCH lines in the forms real job scripts use, read by condatainer and by the real sbatch of
the test cluster, which must agree: the same arguments (sbatch -vvv prints each "Found in
script, argument"), the same refusals.  The same texts are checked without SLURM in
tests/jobs/test_directives.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from condatainer.errors import DirectiveError
from condatainer.jobs import control, directives
from tests.slurm.conftest import Slurm

pytestmark = [pytest.mark.root, pytest.mark.slurm]

# (where such scripts are seen, the script)
FORMS = [
    (
        "university HPC templates: a comment after each option, blank lines between",
        "#!/bin/bash\n#SBATCH --job-name=align   # job name\n\n"
        "#SBATCH --time=01:00:00\t# walltime\n"
        "#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=2  # threads\n# a plain comment\n"
        "#SBATCH --mem=1G\necho\n",
    ),
    (
        "scripts with quoted values: job names with spaces, mail types",
        "#!/bin/bash\n#SBATCH --job-name=\"my job\"\n#SBATCH -J 'other name'\n"
        '#SBATCH --mail-type=BEGIN,END,FAIL\n#SBATCH --comment="a # b" -c 1\necho\n',
    ),
    (
        "hastily written scripts: no blank after the tag, short options glued to values",
        "#!/bin/sh\n#SBATCH--job-name=glued\n#SBATCH -c1\n#SBATCH\t-t 5\n"
        "#SBATCH -o %x-%j.out\necho\n",
    ),
    (
        "a '#' inside a word: sbatch ends the line there (a surprise, but it is what it does)",
        "#!/bin/bash\n#SBATCH --comment=run#2 -c 2\n#SBATCH -J a\\#b\necho\n",
    ),
    (
        "options after the first command, indented ones: both ignored by sbatch",
        "#!/bin/bash\n#SBATCH -J first\n  #SBATCH -J indented\nmodule load gcc\n"
        "#SBATCH -J late\necho\n",
    ),
    (
        "the old #SLURM tag of very old scripts",
        "#!/bin/bash\n#SLURM -J oldtag\n#SBATCH -c 1\necho\n",
    ),
]

REFUSED = [
    ("an unbalanced quote", '#!/bin/bash\n#SBATCH -J "oops\necho\n'),
    ("DOS line breaks (a script saved on Windows)", "#!/bin/bash\r\n#SBATCH -J x\r\necho\r\n"),
    ("a leading ':'", "#!/bin/bash\n#SBATCH : -J x\necho\n"),
]


def sbatch_reads(slurm: Slurm, path: Path) -> tuple[int, list[str], str]:
    res = slurm.run("sbatch", "--test-only", "-vvv", str(path), cwd=path.parent)
    found = re.findall(r'Found in script, argument "(.*)"$', res.stderr, re.MULTILINE)
    return res.returncode, found, res.stderr


@pytest.mark.parametrize(("seen", "text"), FORMS, ids=[f[0][:40] for f in FORMS])
def test_condatainer_reads_what_sbatch_reads(
    slurm: Slurm, tmp_path: Path, seen: str, text: str
) -> None:
    path = tmp_path / "job.sh"
    path.write_text(text)
    code, found, stderr = sbatch_reads(slurm, path)
    assert code == 0, stderr
    parsed = directives.parse(text, str(path))
    assert list(parsed.args) == found, seen
    assert control.script_options(parsed).problems == ()


def test_an_option_sbatch_refuses_is_a_note_of_ours(slurm: Slurm, tmp_path: Path) -> None:
    text = "#!/bin/bash\n#SBATCHX\n#SBATCH --nosuch=1\necho\n"
    path = tmp_path / "job.sh"
    path.write_text(text)
    code, _, stderr = sbatch_reads(slurm, path)
    assert code != 0 and "Invalid directive found in batch script: X" in stderr
    problems = control.script_options(directives.parse(text, "job.sh")).problems
    assert problems[0] == "line 2: Invalid directive found in batch script: X"


@pytest.mark.parametrize(("seen", "text"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_sbatch_refuses_we_refuse(slurm: Slurm, tmp_path: Path, seen: str, text: str) -> None:
    path = tmp_path / "job.sh"
    path.write_bytes(text.encode())
    code, _, stderr = sbatch_reads(slurm, path)
    assert code != 0, stderr
    with pytest.raises(DirectiveError):
        directives.parse(text, str(path))


def test_sbatch_translates_pbs_lines_and_we_say_so(slurm: Slurm, tmp_path: Path) -> None:
    text = "#!/bin/bash\n#SBATCH -c 1\n#PBS -N pbsname\necho\n"
    path = tmp_path / "job.sh"
    path.write_text(text)
    res = slurm.run("sbatch", "--test-only", "-vv", str(path), cwd=tmp_path)
    assert re.search(r"job-name\s+: pbsname", res.stderr), res.stderr
    notes = directives.parse(text, "job.sh").notes
    assert any("sbatch also translates the #PBS options" in n for n in notes)
