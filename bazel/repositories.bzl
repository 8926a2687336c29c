"""Repositories that keep Bazel offline: no rule set or tool is downloaded.

Bazel 4's built-in WORKSPACE suffix would fetch rules_cc, rules_java, rules_proto and the
coverage tools from the internet as soon as a test is analysed. Here they are local shims that
re-export Bazel's native rules (all the BUILD files of @bazel_tools need), and coverage tools
that say they are unavailable. `pypi` stands for the installed pip packages (pip_packages.bzl).
"""

load("//bazel:pip_packages.bzl", "PIP_PACKAGES")

_SHIMS = {
    "rules_cc": ("cc", ["cc_binary", "cc_import", "cc_library", "cc_proto_library", "cc_test",
                        "cc_toolchain", "cc_toolchain_suite", "fdo_prefetch_hints", "fdo_profile",
                        "objc_import", "objc_library"]),
    "rules_java": ("java", ["java_binary", "java_import", "java_library",
                            "java_lite_proto_library", "java_package_configuration",
                            "java_plugin", "java_proto_library", "java_runtime", "java_test",
                            "java_toolchain"]),
    "rules_proto": ("proto", ["proto_lang_toolchain", "proto_library"]),
}

def _native_rules_shim_impl(ctx):
    pkg, rules = _SHIMS[ctx.name]
    ctx.file("WORKSPACE", "workspace(name = %r)\n" % ctx.name)
    ctx.file(pkg + "/BUILD", "")
    body = "".join(["%s = native.%s\n" % (r, r) for r in rules])
    if ctx.name == "rules_proto":
        body += "ProtoInfo = ProtoInfo\n"
    ctx.file(pkg + "/defs.bzl", "# Native rules, re-exported (no download).\n" + body)

native_rules_shim = repository_rule(implementation = _native_rules_shim_impl)

def _no_coverage_tools_impl(ctx):
    ctx.file("WORKSPACE", "workspace(name = %r)\n" % ctx.name)
    ctx.file(
        "unavailable.sh",
        "#!/bin/sh\necho 'error: coverage tools are not available offline' >&2\nexit 1\n",
        executable = True,
    )
    ctx.file("BUILD", "".join([
        'sh_binary(name = "%s", srcs = ["unavailable.sh"], ' % n +
        'visibility = ["//visibility:public"])\n'
        for n in ["coverage_report_generator", "lcov_merger"]
    ]))

no_coverage_tools = repository_rule(implementation = _no_coverage_tools_impl)

_VERSIONS = """
import importlib.metadata, json, sys
out = {}
for dist in sys.argv[1:]:
    try:
        out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        out[dist] = None
print(json.dumps(dict(python=sys.executable, versions=out)))
"""

def _pypi_impl(ctx):
    python = ctx.which("python3")
    if not python:
        fail("no python3 on PATH: the tests run on the installed Python and its packages")
    dists = sorted([d for d, _ in PIP_PACKAGES.values()])
    res = ctx.execute([python, "-c", _VERSIONS] + dists)
    if res.return_code:
        fail("%s could not list its packages: %s" % (python, res.stderr))
    found = json.decode(res.stdout)
    missing = [d for d in dists if not found["versions"][d]]
    if missing:
        fail("pip package(s) %s not installed for %s; install them with: " % (
            ", ".join(missing),
            found["python"],
        ) + "python3 -m pip install -e '.[test]'")
    build = ["# Installed pip packages of %s, checked when this repository was made.\n" %
             found["python"]]
    for target, (dist, imports) in sorted(PIP_PACKAGES.items()):
        build.append('py_library(name = "%s", visibility = ["//visibility:public"])\n' % target)
        build.append("# %s %s, imported as %s\n" % (
            dist,
            found["versions"][dist],
            ", ".join(imports),
        ))
    ctx.file("WORKSPACE", "workspace(name = %r)\n" % ctx.name)
    ctx.file("BUILD", "".join(build))
    ctx.file("versions.json", json.encode(found) + "\n")

pypi = repository_rule(
    implementation = _pypi_impl,
    environ = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "PYENV_VERSION"],
    local = True,
)
