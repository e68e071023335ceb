"""volumes: each node's data directory on a volume of its own (a
size-limited tmpfs, as a pod's PersistentVolume is a filesystem of its
own), so that the `disk_full` fault can fill one node's volume without
touching the machine's disks or the other nodes:

    volumes = Volumes(size_mb=4096)
    volumes.mount(node)        # before the cluster starts: node.data_dir
                               # becomes <node dir>/volume/data
    volumes.fill(node)         # a ballast file takes every free block
    volumes.free(node)         # the ballast is deleted
    volumes.unmount_all()      # after every process has stopped

Needs root (mount). tmpfs takes memory only for what is written.

The size holds what pg_wal keeps on a member of this run, as a
PersistentVolume must (docs/replication.md, "The volume"): recycled
segments up to PostgreSQL's max_wal_size (1 GB), the run's wal_keep_size
(256 MB, driver.py) and one 16 MB segment per timeline change within it
(about two a minute here), and the data. The first 2-hour run had 1 GB
volumes: after 25 minutes every member's pg_wal held 977 MB, every volume
was full, and no member could promote. The second had 3 GB volumes and the
default wal_keep_size (512 MB): 1.9 GB of pg_wal after 53 minutes, 100
timelines' segments of it."""

import os
import subprocess

import pgharness  # tests/integration/pgharness.py

BALLAST = "ballast"


class VolumeError(OSError):
    pass


def _run(argv):
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        raise VolumeError(f"{' '.join(argv)}: exit {result.returncode}: "
                          f"{result.stderr.strip()}")


class Volumes:
    def __init__(self, size_mb=4096):
        self.size_mb = size_mb
        self.mounted = {}           # node name -> mount point

    @staticmethod
    def possible():
        """Why volumes cannot be mounted here, or None."""
        if os.geteuid() != 0:
            return "not root: no mount"
        return None

    def mount(self, node):
        """A tmpfs of size_mb at <node dir>/volume, owned by the user
        PostgreSQL runs as; the node's data directory moves into it. Call
        before the cluster writes its files."""
        point = os.path.join(node.dir, "volume")
        pgharness.make_dir(node.dir)
        pgharness.make_dir(point)
        run_as = pgharness.runner()
        options = f"size={self.size_mb}m,mode=0755"
        if run_as.is_root:
            options += f",uid={run_as.uid},gid={run_as.gid}"
        _run(["mount", "-t", "tmpfs", "-o", options,
              f"pglease-{node.name}", point])
        self.mounted[node.name] = point
        node.data_dir = os.path.join(point, "data")

    def point(self, node):
        return self.mounted[node.name]

    def fill(self, node):
        """Take every free block of the node's volume with a ballast file;
        returns the bytes taken."""
        point = self.point(node)
        stat = os.statvfs(point)
        size = stat.f_bavail * stat.f_frsize
        fd = os.open(os.path.join(point, BALLAST),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # What statvfs counted free may have shrunk meanwhile
            # (PostgreSQL writes on): a megabyte less each try.
            while size > 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError:
                    size -= min(size, 1 << 20)
        finally:
            os.close(fd)
        return size

    def free(self, node):
        try:
            os.unlink(os.path.join(self.point(node), BALLAST))
        except FileNotFoundError:
            pass

    def free_all(self):
        for point in self.mounted.values():
            try:
                os.unlink(os.path.join(point, BALLAST))
            except FileNotFoundError:
                pass

    def unmount_all(self):
        """Unmount every volume (lazily if a straggler holds one)."""
        errors = []
        for point in self.mounted.values():
            try:
                _run(["umount", point])
            except VolumeError:
                try:
                    _run(["umount", "-l", point])
                except VolumeError as exc:
                    errors.append(str(exc))
        self.mounted.clear()
        if errors:
            raise VolumeError("; ".join(errors))
