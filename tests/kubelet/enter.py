"""The container runtime's last step, run inside the container's fresh mount namespace.

    nsenter --net=/run/netns/POD -- unshare --mount --propagation unchanged -- \\
        python enter.py SPEC.json

builds the container's root (a tmpfs holding the image's directories as overlays, /proc,
a minimal /dev, /sys, then the declared volumes with their propagation), makes the root
read-only when the spec says so, chroots into it and execs `setpriv` with the container's
user, groups, capabilities and no_new_privs, which execs the command. The process that the
harness started is thus the container's main process, and the mount namespace (with every
mount made here) disappears with it.

Standard library only, and the `mount` command: this runs once per container start and must
not pay the import of the project. `--propagation unchanged` matters: the fake node's pods
directory is a shared mount, and a Bidirectional volume must stay in its peer group
(`ip netns exec` would turn every mount into a slave; util-linux's default is private).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, timeout=30)


def bind(source: str, target: str, read_only: bool, recursive: bool = True) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    run("mount", "--rbind" if recursive else "--bind", source, target)
    if read_only:
        run("mount", "-o", "remount,bind,ro", target)


def image(root: str, layers: str, spec: dict) -> list[str]:
    """The image: each directory an overlay (this machine's files below, a tmpfs layer
    above), as a container runtime stacks a writable layer on the image, so that mount
    points can be made anywhere; made read-only with the root when the spec says so."""
    run("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", root)
    run("mount", "-t", "tmpfs", "-o", "mode=700", "tmpfs", layers)
    overlays = []
    for i, directory in enumerate(spec["image_dirs"]):
        upper, work = f"{layers}/{i}/upper", f"{layers}/{i}/work"
        os.makedirs(upper)
        os.makedirs(work)
        os.makedirs(root + directory)
        run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={directory},upperdir={upper},workdir={work}",
            root + directory,
        )
        overlays.append(root + directory)
    for name in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + name):
            os.symlink(os.readlink("/" + name), f"{root}/{name}")
    for name, mode in (("tmp", 0o1777), ("run", 0o755), ("var/tmp", 0o1777)):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        os.chmod(f"{root}/{name}", mode)
    return overlays


def system(root: str, privileged: bool) -> None:
    os.makedirs(f"{root}/proc")
    run("mount", "-t", "proc", "proc", f"{root}/proc")
    os.makedirs(f"{root}/sys")
    run("mount", "-t", "sysfs", "-o", "rw" if privileged else "ro", "sysfs", f"{root}/sys")
    os.makedirs(f"{root}/dev")
    if privileged:
        run("mount", "--rbind", "/dev", f"{root}/dev")
        return
    run("mount", "-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", f"{root}/dev")
    for node in DEV_NODES:
        bind(f"/dev/{node}", f"{root}/dev/{node}", read_only=False, recursive=False)
    os.makedirs(f"{root}/dev/shm")
    run("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{root}/dev/shm")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")


def volumes(root: str, mounts: list[dict]) -> None:
    # parents before children, as the runtimes order mounts by destination
    for m in sorted(mounts, key=lambda m: m["target"].rstrip("/").count("/")):
        target = root + m["target"]
        bind(m["source"], target, m["read_only"])
        flag = {"Bidirectional": "--make-rshared", "HostToContainer": "--make-rslave"}
        run("mount", flag.get(m["propagation"], "--make-rprivate"), target)


def setpriv(spec: dict) -> list[str]:
    ident = spec["identity"]
    argv = ["setpriv", f"--reuid={ident['uid']}", f"--regid={ident['gid']}"]
    groups = ident["groups"]
    argv.append(f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups")
    if ident["no_new_privs"]:
        argv.append("--no-new-privs")
    if ident["caps"] != ["ALL"]:
        keep = "".join(f",+{c.lower()}" for c in ident["caps"])
        argv += ["--inh-caps=-all", f"--bounding-set=-all{keep}"]
    return [*argv, "--", *spec["argv"]]


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    root = spec["rootfs"]
    overlays = image(root, spec["layers"], spec)
    system(root, spec["identity"]["privileged"])
    volumes(root, spec["mounts"])
    if spec["read_only_root"]:
        for path in [root, *overlays]:
            run("mount", "-o", "remount,ro", path)
    os.chroot(root)
    os.chdir(spec["working_dir"])
    argv = setpriv(spec)
    os.execvpe(argv[0], argv, dict(spec["env"]))


if __name__ == "__main__":
    main()
