//! A real container engine in the throwaway systemd: Debian's dockerd,
//! started by the test as the unit `engine.service` (the host's own
//! docker.service and containerd.service are masked in every sandbox), and
//! a local image, as no registry can be reached: a busybox-static root
//! imported as `bb:local`.

use std::time::Duration;

use super::Sandbox;

/// The engine's socket inside the sandbox.
pub const SOCKET: &str = "/run/docker.sock";

/// The image every container test runs (`/bin/busybox` and its applets).
pub const IMAGE: &str = "bb:local";

impl Sandbox {
    /// Starts dockerd (vfs storage, no bridge and no iptables: the
    /// sandbox's network namespace has loopback only) and imports the
    /// image; returns when the engine answers.
    pub fn start_engine(&self) {
        self.unit(
            "engine.service",
            "[Service]\nType=notify\n\
             ExecStart=/usr/sbin/dockerd -H unix:///run/docker.sock --storage-driver vfs --iptables=false --bridge=none\n\
             Delegate=yes\nKillMode=process\n",
        );
        self.ok("systemctl start engine.service");
        self.wait_for("the engine to answer", Duration::from_secs(30), || {
            self.sh(&format!("docker -H unix://{SOCKET} version"))
                .status
                .success()
                .then_some(())
        });
        // Directories 0755, or exec in the container is refused.
        self.ok(&format!(
            "set -e; r=$(mktemp -d); mkdir -p $r/bin $r/tmp; chmod 755 $r $r/bin; chmod 1777 $r/tmp; \
             cp /bin/busybox $r/bin/busybox; \
             for a in sh nc sleep cat head dd httpd true false yes touch test tr; do ln -s busybox $r/bin/$a; done; \
             tar -C $r -cf /tmp/bb.tar .; docker -H unix://{SOCKET} import /tmp/bb.tar {IMAGE} >/dev/null"
        ));
    }

    /// `docker ARGS` against the sandbox's engine, which must succeed.
    pub fn docker(&self, args: &str) -> String {
        self.ok(&format!("docker -H unix://{SOCKET} {args}"))
    }

    /// The engine's socket as the host reaches it.
    pub fn engine_uri(&self) -> String {
        format!("unix:///proc/{}/root{SOCKET}", self.pid1)
    }
}
