"""Builds and runs the TFLite Micro app that `micro_app.render_template` writes.

The app's own Makefile does the work (`make TFLM_DIR=... test` is the
documented command); this module calls it for the tests and benchmarks:
builds one configuration, runs its golden-image test (the Cortex-M builds
under qemu-system-arm), parses what the test prints, and reads section sizes
with `arm-none-eabi-size`.

Configurations: `host` (g++, reference kernels), `cm4-ref` and
`cm4-cmsis_nn` (arm-none-eabi-g++ for a Cortex-M4, reference kernels and
CMSIS-NN).
"""

import os
import re
import shutil
import subprocess

import numpy as np

CONFIGS = ("host", "cm4-ref", "cm4-cmsis_nn")
CORTEX_M_CONFIGS = ("cm4-ref", "cm4-cmsis_nn")
# Debian packages of each tool the builds and runs need.
PACKAGES = {
    "g++": "g++",
    "make": "make",
    "arm-none-eabi-g++": "gcc-arm-none-eabi libnewlib-arm-none-eabi "
                         "libstdc++-arm-none-eabi-newlib",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}


class FirmwareError(RuntimeError):
    """A build or run of the app failed; the message says what to change."""


def missing_tools(configs=CONFIGS, run=True):
    """The tools that `configs` need and PATH lacks, as 'tool (apt-get
    install packages)' strings."""
    tools = ["make"]
    if "host" in configs:
        tools.append("g++")
    if any(c in CORTEX_M_CONFIGS for c in configs):
        tools += ["arm-none-eabi-g++", "arm-none-eabi-size"]
        if run:
            tools.append("qemu-system-arm")
    return [f"{t} (apt-get install {PACKAGES[t]})"
            for t in tools if shutil.which(t) is None]


def binary_path(app_dir, config, build_dir="build"):
    """Where the app's Makefile writes the test binary of `config`."""
    name = "mdnet_test" if config == "host" else "mdnet_test.elf"
    return os.path.join(app_dir, build_dir, config, name)


def _make(app_dir, tflm_dir, target, build_dir, app_cxxflags, qemu_extra,
          jobs, timeout, env=None):
    cmd = ["make", "--no-print-directory", "-C", os.fspath(app_dir),
           f"TFLM_DIR={os.path.abspath(tflm_dir)}", f"BUILD_DIR={build_dir}",
           f"-j{jobs}", target]
    if app_cxxflags:
        cmd.append(f"APP_CXXFLAGS={app_cxxflags}")
    if qemu_extra:
        cmd.append(f"QEMU_EXTRA={qemu_extra}")
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise FirmwareError(f"`{' '.join(cmd)}` took over {timeout} s") from e


def _tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


def build(app_dir, tflm_dir, config, build_dir="build", app_cxxflags="",
          jobs=2, timeout=3600):
    """Builds `config`'s test binary (TFLite Micro's library comes from the
    cache, or is compiled into it the first time). Returns its path.

    Raises:
        FirmwareError: with the Makefile's message (e.g. a wrong TFLM_DIR, a
            missing compiler) or the end of the compiler's output.
    """
    if config not in CONFIGS:
        raise ValueError(f"config {config!r}: expected one of {CONFIGS}")
    done = _make(app_dir, tflm_dir, config, build_dir, app_cxxflags, None,
                 jobs, timeout)
    if done.returncode != 0:
        raise FirmwareError(f"building {config} failed:\n"
                            + _tail(done.stderr or done.stdout))
    return binary_path(app_dir, config, build_dir)


def parse_test_output(text):
    """Reads what `mdnet_test.cc` prints.

    Returns:
        dict: `passed` (the PASSED marker was printed), `arena_used`,
        `arena_size`, `outputs` ((N, classes) int array), `max_diff` and
        `tolerance` (int8 steps), `insns` (from the instruction-count
        plugin, when it ran).
    """
    result = {"passed": "MDNET TEST PASSED" in text and "MDNET TEST FAILED" not in text}
    m = re.search(r"arena used (\d+) of (\d+) bytes", text)
    if m:
        result["arena_used"], result["arena_size"] = int(m.group(1)), int(m.group(2))
    rows = [[int(v) for v in line.split()]
            for line in re.findall(r"^outputs \d+:(.*)$", text, re.M)]
    result["outputs"] = np.array(rows, dtype=np.int32)
    m = re.search(r"largest difference (\d+) int8 steps \(allowed (\d+)\)", text)
    if m:
        result["max_diff"], result["tolerance"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"^insns: (\d+)$", text, re.M)
    if m:
        result["insns"] = int(m.group(1))
    return result


def run(app_dir, tflm_dir, config, build_dir="build", app_cxxflags="",
        qemu_extra="", jobs=2, timeout=3600):
    """Builds (if needed) and runs `config`'s golden-image test.

    Returns:
        `parse_test_output`'s dict plus `returncode` and `text` (all output).
        A failed comparison is reported there, not raised.

    Raises:
        FirmwareError: when the build fails, or the run prints no outputs at
            all (then the message quotes the end of what it printed).
    """
    build(app_dir, tflm_dir, config, build_dir, app_cxxflags, jobs, timeout)
    done = _make(app_dir, tflm_dir, f"run-{config}", build_dir, app_cxxflags,
                 qemu_extra, jobs, timeout)
    text = done.stdout + done.stderr
    result = parse_test_output(text)
    result.update(returncode=done.returncode, text=text)
    if not len(result["outputs"]):
        raise FirmwareError(f"{config}: the test printed no outputs "
                            f"(exit status {done.returncode}):\n" + _tail(text))
    return result


def section_sizes(elf):
    """Section sizes in bytes of an ELF (`arm-none-eabi-size -A`), with
    `flash` = .text + .rodata + .data (initial values) and `ram` = .data +
    .bss."""
    size = "arm-none-eabi-size" if shutil.which("arm-none-eabi-size") else "size"
    out = subprocess.run([size, "-A", os.fspath(elf)], capture_output=True,
                         text=True, check=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    get = sections.get
    sections["flash"] = get(".text", 0) + get(".rodata", 0) + get(".data", 0)
    sections["ram"] = get(".data", 0) + get(".bss", 0)
    return sections
