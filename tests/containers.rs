//! The Docker Engine API client (src/containers/) against a real dockerd
//! in the throwaway systemd, no stand-in: list and inspect by name and by
//! label, a memory sample, a `docker kill` seen on the events stream in
//! milliseconds, a HEALTHCHECK going unhealthy with its output, an OOM
//! kill, start and restart through the API, a missing container's 404,
//! and the stream ending when the engine restarts, then subscribed again.

mod harness;

use std::time::{Duration, Instant};

use harness::engine::IMAGE;
use harness::Sandbox;
use unitwatch::containers::{Engine, Events};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next event of `verb` for `name`, skipping others, within `within`.
async fn next_of(
    ev: &mut Events,
    name: &str,
    verb: &str,
    within: Duration,
) -> unitwatch::containers::Event {
    tokio::time::timeout(within, async {
        loop {
            let e = ev
                .next()
                .await
                .expect("the stream")
                .expect("an event, not the end");
            if e.name() == Some(name) && e.verb() == verb {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {verb} event for {name} within {within:?}"))
}

#[test]
fn the_engine_client_against_a_real_dockerd() {
    let sb = Sandbox::boot("containers-engine");
    sb.start_engine();
    let engine = Engine::new(&sb.engine_uri(), Duration::from_secs(5)).unwrap();
    let rt = rt();

    // A container serving a port, with a label; one that is not watched.
    sb.docker(&format!(
        "run -d --name gw --label app=ibkr --network host {IMAGE} /bin/busybox nc -ll -p 4002 -e /bin/cat"
    ));
    sb.docker(&format!(
        "run -d --name other --network none {IMAGE} /bin/busybox sleep 1000"
    ));

    rt.block_on(async {
        let by_name = engine.list(&["gw"], &[]).await.unwrap();
        assert_eq!(by_name.len(), 1, "{by_name:?}");
        assert_eq!(
            (by_name[0].name(), by_name[0].state.as_str()),
            ("gw", "running")
        );
        let by_label = engine.list(&[], &["app=ibkr"]).await.unwrap();
        assert_eq!(
            by_label.iter().map(|s| s.name()).collect::<Vec<_>>(),
            ["gw"]
        );
        assert!(engine
            .list(&["nothing-here"], &[])
            .await
            .unwrap()
            .is_empty());

        let i = engine.inspect("gw").await.unwrap();
        assert_eq!(
            (i.name(), i.state.running, i.state.status.as_str()),
            ("gw", true, "running")
        );
        assert!(!i.engine_restarts());
        let m = engine.memory("gw").await.unwrap();
        assert!(m.used.is_some_and(|u| u > 0), "{m:?}");

        let missing = engine.inspect("nope").await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(
            missing.to_string().contains("No such container: nope"),
            "{missing}"
        );

        // A kill is on the stream in milliseconds; the other container's
        // events are filtered out by the engine.
        let mut ev = engine.events(&["gw"], &[]).await.unwrap();
        let t = Instant::now();
        sb.docker("kill other gw");
        let die = next_of(&mut ev, "gw", "die", Duration::from_secs(5)).await;
        println!("docker kill to the die event: {:?}", t.elapsed());
        assert_eq!(
            die.actor.attributes.get("exitCode").map(String::as_str),
            Some("137")
        );
        let i = engine.inspect("gw").await.unwrap();
        assert_eq!((i.state.running, i.state.exit_code), (false, 137));

        // Start and restart through the API.
        engine.start("gw").await.unwrap();
        next_of(&mut ev, "gw", "start", Duration::from_secs(10)).await;
        assert!(engine.inspect("gw").await.unwrap().state.running);
        let before = engine.inspect("gw").await.unwrap().state.started_at;
        engine.restart("gw", 1).await.unwrap();
        let after = engine.inspect("gw").await.unwrap();
        assert!(
            after.state.running && after.state.started_at != before,
            "{after:?}"
        );
        drop(ev);

        // The engine restarted: the stream ends, and a new one works.
        let mut ev = engine.events(&["gw"], &[]).await.unwrap();
        sb.ok("systemctl restart engine.service");
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match ev.next().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return "ended".to_string(),
                    Err(e) => return e.to_string(),
                }
            }
        })
        .await
        .expect("the stream ends when the engine restarts");
        println!("the stream at the engine's restart: {end}");
        let mut ev = loop {
            match engine.events(&["gw"], &[]).await {
                Ok(ev) => break ev,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        sb.docker("start gw");
        next_of(&mut ev, "gw", "start", Duration::from_secs(10)).await;
    });

    // A HEALTHCHECK that fails: the event, and its output in the state.
    sb.docker(&format!(
        "run -d --name sick --network none --health-cmd 'echo port 4002 closed; false' --health-interval 1s --health-retries 1 {IMAGE} /bin/busybox sleep 1000"
    ));
    rt.block_on(async {
        let mut ev = engine.events(&["sick"], &[]).await.unwrap();
        let h = next_of(&mut ev, "sick", "health_status", Duration::from_secs(20)).await;
        assert_eq!(h.action, "health_status: unhealthy");
        let i = engine.inspect("sick").await.unwrap();
        let health = i.state.health.expect("a health state");
        assert_eq!(
            (health.status.as_str(), health.last_output()),
            ("unhealthy", Some("port 4002 closed"))
        );
    });

    // Past its memory limit: the oom event and OOMKilled.
    rt.block_on(async {
        let mut ev = engine.events(&[], &["app=hog"]).await.unwrap();
        sb.docker(&format!(
            "run -d --name hog --label app=hog --network none -m 16m --memory-swap 16m {IMAGE} /bin/busybox sh -c 'sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1'"
        ));
        // With labels the engine's filter cannot select: the caller does.
        let oom = loop {
            let e = tokio::time::timeout(Duration::from_secs(20), ev.next())
                .await
                .expect("events within 20 s")
                .unwrap()
                .unwrap();
            if e.has_label("app=hog") && e.verb() == "oom" {
                break e;
            }
        };
        assert_eq!(oom.name(), Some("hog"));
        next_of(&mut ev, "hog", "die", Duration::from_secs(10)).await;
        let i = engine.inspect("hog").await.unwrap();
        assert!(i.state.oom_killed && !i.state.running, "{:?}", i.state);
    });
}

/// Waits until check `key` has `status` in status.json, and returns it.
fn reach(sb: &Sandbox, key: &str, status: &str) -> serde_json::Value {
    sb.wait_check(key, status, Duration::from_secs(20))
}

#[test]
fn the_daemon_watches_containers_by_their_engines_events() {
    let sb = Sandbox::boot("containers-daemon");
    sb.start_engine();
    sb.docker(&format!(
        "run -d --name gw --network host {IMAGE} /bin/busybox nc -ll -p 4002 -e /bin/cat"
    ));
    // Holds 4 MB of its 64 MiB limit.
    sb.docker(&format!(
        "run -d --name hog -m 64m --memory-swap 64m --network none {IMAGE} /bin/busybox sh -c \
         'x=$(yes | head -c 4000000); echo held; sleep 1000000; echo ${{#x}}'"
    ));
    let held = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        sb.sh_out(&format!(
            "docker -H unix://{} logs hog 2>&1",
            harness::engine::SOCKET
        ))
        .contains("held")
    });
    assert!(
        held,
        "hog never held its memory: {}",
        sb.sh_out(&format!(
            "docker -H unix://{0} ps -a; docker -H unix://{0} logs hog 2>&1",
            harness::engine::SOCKET
        ))
    );
    // A HEALTHCHECK that fails.
    sb.docker(&format!(
        "run -d --name sick --network none --health-cmd 'echo port 4002 closed; false' \
         --health-interval 1s --health-retries 1 {IMAGE} /bin/busybox sleep 1000000"
    ));
    // A real OTLP collector for the figures.
    sb.start_rotel();
    // A 60 s sweep: whatever is seen sooner was seen by an event.
    let mut config = String::from(
        "[daemon]\ninterval = \"60s\"\n[telemetry]\ninterval = \"1s\"\n\
         [[container]]\nname = \"gw\"\nengine = \"unix:///run/docker.sock\"\nrestart = false\nmemory_warn = \"1KiB\"\nmemory_crit = \"1GiB\"\n\
         [[container]]\nname = \"absent\"\nengine = \"unix:///run/docker.sock\"\n\
         [[container]]\nname = \"hog\"\nengine = \"unix:///run/docker.sock\"\nmemory_warn = \"2MiB\"\n",
    );
    for n in ["sick", "oom"] {
        config += &format!("[[container]]\nname = \"{n}\"\nengine = \"unix:///run/docker.sock\"\nrestart = false\n");
    }
    sb.start_unitwatch(&config, "");
    // As shipped, as the unitwatch user: the generator gave it the
    // socket's group, for this config only.
    assert_eq!(sb.prop("unitwatch", "User"), "unitwatch");
    assert!(
        sb.prop("unitwatch", "SupplementaryGroups")
            .split_whitespace()
            .any(|g| g == "docker"),
        "{}",
        sb.prop("unitwatch", "SupplementaryGroups")
    );
    let state = reach(&sb, "gw.container:state", "pass");
    assert_eq!(state["observed_value"], "running");
    assert_eq!(state["unit"], "gw.container", "{state}");
    let mem = reach(&sb, "gw.container:memory", "warn");
    assert!(
        mem["output"].as_str().unwrap().starts_with("gw uses "),
        "{mem}"
    );
    // /metrics, as unitwatch-http renders this status.json, promtool-clean.
    let snap: unitwatch::snapshot::Snapshot = serde_json::from_value(sb.status_json()).unwrap();
    let (_, text) = unitwatch::http::metrics::Exposition::new(Some(&snap))
        .scrape(false, unitwatch::http::metrics::PerScrape::aged(1.0));
    harness::promtool_check(text.as_bytes());
    assert!(
        text.contains("unitwatch_container_running{container=\"gw\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("unitwatch_container_memory_bytes{container=\"gw\"}"),
        "{text}"
    );
    assert!(
        text.contains("unitwatch_container_engine_restarts{container=\"gw\"} 0"),
        "{text}"
    );
    // status.json's view of it: unitwatch's restart bookkeeping.
    let st = sb.status_json();
    assert_eq!(st["containers"]["gw.container"]["restart"], false, "{st}");
    assert_eq!(st["containers"]["hog.container"]["restart"], true, "{st}");
    // The same figures over OTLP, at the collector.
    let out = sb.wait_for(
        "container figures at rotel",
        Duration::from_secs(60),
        || {
            let out = sb.read("/var/log/rotel.log")?;
            (out.contains("unitwatch.container.running")
                && out.contains("unitwatch.container.memory")
                && out.contains("unitwatch.container.engine_restarts"))
            .then_some(out)
        },
    );
    assert!(out.contains("container: Str(gw)"), "{out}");
    // /health/service/gw.container, as unitwatch-http answers it.
    let h = unitwatch::http::health::service(
        Some(&snap),
        &unitwatch::http::health::Freshness::Fresh,
        "vm",
        "gw.container",
    )
    .expect("the container is a service of /health/service");
    let h = serde_json::to_value(&h).unwrap();
    assert_eq!(h["serviceId"], "gw.container", "{h}");
    assert!(h["checks"].get("gw.container:state").is_some(), "{h}");
    assert!(h["checks"].get("gw.service:state").is_none());
    // Its memory against its limit; a failing HEALTHCHECK with its output.
    let hog = reach(&sb, "hog.container:memory", "warn");
    let said = hog["output"].as_str().unwrap();
    assert!(
        said.starts_with("hog uses ") && said.contains(" of its 64.0 MiB limit (warn at 2.0 MiB)"),
        "{hog}"
    );
    let sick = reach(&sb, "sick.container:state", "fail");
    assert_eq!(
        sick["output"], "sick is unhealthy: port 4002 closed",
        "{sick}"
    );
    // Past its memory limit: OOMKilled, said so.
    sb.docker(&format!(
        "run -d --name oom -m 16m --memory-swap 16m --network none {IMAGE} /bin/busybox sh -c \
         'sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1'"
    ));
    let oom = sb.wait_check_where(
        "oom.container:state",
        "OOMKilled",
        Duration::from_secs(20),
        |c| {
            c["output"]
                .as_str()
                .is_some_and(|o| o.contains("OOMKilled"))
        },
    );
    assert!(
        oom["output"]
            .as_str()
            .unwrap()
            .starts_with("oom is exited with code 137 (OOMKilled: it ran out of memory)"),
        "{oom}"
    );
    let absent = reach(&sb, "absent.container:state", "fail");
    assert!(
        absent["output"]
            .as_str()
            .unwrap()
            .starts_with("no container absent"),
        "{absent}"
    );

    // docker kill: the daemon's unit-failed for it, well inside the sweep.
    let before: u64 = sb.ok("date +%s%6N").trim().parse().unwrap();
    sb.docker("kill gw");
    let failed = sb.wait_for(
        "unit-failed for gw.container",
        Duration::from_secs(10),
        || {
            sb.journal("UNITWATCH_EVENT=unit-failed")
                .into_iter()
                .find(|e| harness::field(e, "UNITWATCH_CHECK") == "gw.container:state")
        },
    );
    let at: u64 = harness::field(&failed, "__REALTIME_TIMESTAMP")
        .parse()
        .unwrap();
    println!(
        "docker kill to unit-failed: {} ms (including the docker CLI)",
        (at - before) / 1000
    );
    assert!(
        at - before < 5_000_000,
        "seen after {} ms: not by an event",
        (at - before) / 1000
    );
    let msg = harness::field(&failed, "MESSAGE");
    assert!(msg.contains("gw is exited with code 137"), "{msg}");
    // The event at the collector too, naming the container.
    sb.wait_for("gw's unit-failed at rotel", Duration::from_secs(30), || {
        let out = sb.read("/var/log/rotel.log")?;
        (out.contains("EventName: unit-failed") && out.contains("Str(gw.container)")).then_some(())
    });
    let state = reach(&sb, "gw.container:state", "fail");
    assert_eq!(state["observed_value"], "exited");
    assert_eq!(
        reach(&sb, "gw.container:memory", "pass")["output"],
        "not running"
    );

    // Started again: unit-recovered.
    sb.docker("start gw");
    reach(&sb, "gw.container:state", "pass");
    sb.wait_for(
        "unit-recovered for gw.container",
        Duration::from_secs(10),
        || {
            sb.journal("UNITWATCH_EVENT=unit-recovered")
                .into_iter()
                .find(|e| harness::field(e, "UNITWATCH_CHECK") == "gw.container:state")
        },
    );

    // The engine restarted under the daemon: reported, then reached
    // again, and its events flow again (the engine stopped gw, which has
    // no restart policy; its start is seen at once).
    sb.ok("systemctl stop engine.service");
    let lost = reach(&sb, "gw.container:state", "fail");
    assert!(
        lost["output"]
            .as_str()
            .unwrap()
            .contains("cannot reach the engine at unix:///run/docker.sock"),
        "{lost}"
    );
    sb.ok("systemctl start engine.service");
    let back = sb.wait_check_where(
        "gw.container:state",
        "exited",
        Duration::from_secs(20),
        |c| c["observed_value"] == "exited",
    );
    assert_eq!(back["status"], "fail", "{back}");
    sb.docker("start gw");
    let again = sb.wait_check("gw.container:state", "pass", Duration::from_secs(5));
    assert_eq!(again["observed_value"], "running");
}

/// The journal events of `kind` about `key` (UNITWATCH_UNIT).
fn events_of(sb: &Sandbox, kind: &str, key: &str) -> Vec<serde_json::Value> {
    sb.journal(&format!("UNITWATCH_EVENT={kind} UNITWATCH_UNIT={key}"))
}

#[test]
fn a_failed_container_is_brought_back_on_the_backoff() {
    let sb = Sandbox::boot("containers-recovery");
    sb.start_engine();
    sb.docker(&format!(
        "run -d --name gw --network host {IMAGE} /bin/busybox nc -ll -p 4002 -e /bin/cat"
    ));
    sb.docker(&format!(
        "run -d --name pol --restart always --network none {IMAGE} /bin/busybox sleep 1000"
    ));
    sb.docker(&format!(
        "run -d --name byhand --network none {IMAGE} /bin/busybox sleep 1000"
    ));
    // Unhealthy while it runs: restarted (POST /restart), which waits
    // the 10 s a stop may take (sleep as PID 1 ignores SIGTERM).
    sb.docker(&format!(
        "run -d --name sick --network none --health-cmd 'echo not ready; false' \
         --health-interval 1s --health-retries 1 {IMAGE} /bin/busybox sleep 1000000"
    ));
    let mut config =
        String::from("[daemon]\ninterval = \"60s\"\n[backoff]\ninitial = \"1s\"\nfactor = 2.0\n");
    for n in ["gw", "pol", "byhand", "sick"] {
        config += &format!("[[container]]\nname = \"{n}\"\nengine = \"unix:///run/docker.sock\"\n");
    }
    sb.start_unitwatch(&config, "");
    for n in ["gw", "pol", "byhand"] {
        reach(&sb, &format!("{n}.container:state"), "pass");
    }

    // Killed: started again after the backoff's 1 s, then 2 s.
    for (attempt, delay) in [(1, "1s"), (2, "2s")] {
        let t = std::time::Instant::now();
        sb.docker("kill gw");
        let done = sb.wait_for(
            "unit-restarted for gw.container",
            Duration::from_secs(15),
            || {
                let r = events_of(&sb, "unit-restarted", "gw.container");
                (r.len() == attempt).then(|| r[attempt - 1].clone())
            },
        );
        let took = t.elapsed();
        let planned = events_of(&sb, "restart-scheduled", "gw.container");
        let said = harness::field(&planned[attempt - 1], "MESSAGE").to_string();
        assert!(
            said.starts_with(&format!("restarting gw.container in {delay}")),
            "{said}"
        );
        assert!(
            said.contains(&format!("attempt {attempt}, reason: exited")),
            "{said}"
        );
        assert!(harness::field(&done, "MESSAGE").contains(&format!("attempt {attempt}")));
        println!("docker kill to gw started again (attempt {attempt}, backoff {delay}): {took:?}");
        assert!(
            took >= Duration::from_secs(attempt as u64),
            "{took:?}: before the backoff"
        );
        let s = reach(&sb, "gw.container:state", "pass");
        assert_eq!(s["observed_value"], "running");
    }
    let b = sb.backoff_json();
    assert_eq!(b["units"]["gw.container"]["attempts"], 2, "{b}");
    // Meanwhile sick was planned and restarted as unhealthy; gw's kills
    // were handled while its restart waited for it to stop.
    let sick = sb.wait_for("sick restarted", Duration::from_secs(30), || {
        events_of(&sb, "unit-restarted", "sick.container")
            .into_iter()
            .next()
    });
    assert!(
        harness::field(&sick, "MESSAGE").contains("reason: unhealthy"),
        "{sick}"
    );
    let st = sb.status_json();
    assert_eq!(
        st["containers"]["gw.container"]["backoff"]["attempts"], 2,
        "{st}"
    );

    // docker stop by hand is not undone; the engine's own restart policy
    // is not doubled.
    sb.docker("stop -t 1 byhand");
    // A crash, not docker kill (which the engine takes as an operator's
    // stop, and its policy then leaves alone).
    sb.ok("kill -9 $(docker -H unix:///run/docker.sock inspect -f '{{.State.Pid}}' pol)");
    std::thread::sleep(Duration::from_secs(4));
    assert!(events_of(&sb, "unit-restarted", "byhand.container").is_empty());
    let byhand = reach(&sb, "byhand.container:state", "fail");
    assert!(
        byhand["output"]
            .as_str()
            .unwrap()
            .contains("stopped by hand (docker stop): not restarted"),
        "{byhand}"
    );
    assert!(events_of(&sb, "restart-scheduled", "pol.container").is_empty());
    assert!(events_of(&sb, "unit-restarted", "pol.container").is_empty());
    reach(&sb, "pol.container:state", "pass");
    let pol: u64 = sb
        .docker("inspect -f '{{.RestartCount}}' pol")
        .trim()
        .parse()
        .unwrap();
    assert!(pol >= 1, "the engine restarted pol itself");

    // The plan survives a restart of the daemon: killed, its restart due
    // in 4 s, the daemon restarted meanwhile, and the restart still made
    // (attempt 3), not started over.
    sb.docker("kill gw");
    sb.wait_for("the third restart planned", Duration::from_secs(10), || {
        (events_of(&sb, "restart-scheduled", "gw.container").len() == 3).then_some(())
    });
    sb.ok("systemctl restart unitwatch");
    let third = sb.wait_for("the third restart", Duration::from_secs(20), || {
        let r = events_of(&sb, "unit-restarted", "gw.container");
        (r.len() == 3).then(|| r[2].clone())
    });
    assert!(
        harness::field(&third, "MESSAGE").contains("attempt 3"),
        "{third}"
    );
    reach(&sb, "gw.container:state", "pass");
    // And a stop by hand stays a stop across the daemon's restart too:
    // read from the engine's history, not restarted.
    sb.ok("systemctl restart unitwatch");
    reach(&sb, "gw.container:state", "pass");
    std::thread::sleep(Duration::from_secs(3));
    assert!(events_of(&sb, "unit-restarted", "byhand.container").is_empty());
    // Its backoff is reset by name, as a unit's is.
    sb.ok(&format!(
        "{} backoff reset gw.container",
        harness::unitwatchd_bin().display()
    ));
    assert!(sb.backoff_json()["units"].get("gw.container").is_none());
}

#[test]
fn ready_checks_decide_recovered_or_recovery_failed() {
    use harness::receiver::{events, received};
    let sb = Sandbox::boot("containers-ready");
    sb.start_engine();
    sb.start_receiver(8099);
    // gw serves its port every run; noport only on its first (its file
    // system keeps the mark across a restart), so after a restart its
    // port never answers.
    sb.docker(&format!(
        "run -d --name gw --network host {IMAGE} /bin/busybox nc -ll -p 4002 -e /bin/cat"
    ));
    sb.docker(&format!(
        "run -d --name noport --network host {IMAGE} /bin/busybox sh -c \
         'if [ -e /first ]; then exec sleep 1000000; fi; touch /first; exec nc -ll -p 4003 -e /bin/cat'"
    ));
    sb.start_unitwatch(
        "[daemon]\ninterval = \"60s\"\n[backoff]\ninitial = \"1s\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"gw-port\"\naddress = \"127.0.0.1:4002\"\ninterval = \"1s\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"noport-port\"\naddress = \"127.0.0.1:4003\"\ninterval = \"1s\"\n\
         [[container]]\nname = \"gw\"\nengine = \"unix:///run/docker.sock\"\nready = [\"gw-port\"]\nready_timeout = \"20s\"\n\
         [[container]]\nname = \"noport\"\nengine = \"unix:///run/docker.sock\"\nready = [\"noport-port\"]\nready_timeout = \"3s\"\n\
         [[alert]]\ntype = \"discord\"\nurl = \"http://127.0.0.1:8099/api/webhooks/1/d1sc0rd-t0ken\"\nmention = \"<@&4242>\"\n",
        "",
    );
    reach(&sb, "gw-port:tcp", "pass");
    reach(&sb, "noport-port:tcp", "pass");

    // gw: killed, restarted after 1 s, its port back: recovered, by its
    // ready check, not by its state alone.
    sb.docker("kill gw");
    let rec = sb.wait_for("gw.container recovered", Duration::from_secs(20), || {
        events_of(&sb, "unit-recovered", "gw.container")
            .into_iter()
            .next()
    });
    let msg = harness::field(&rec, "MESSAGE");
    assert!(
        msg.starts_with("gw.container recovered: ready (gw-port:tcp passed)")
            && msg.ends_with("after its restart"),
        "{msg}"
    );

    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        events_of(&sb, "unit-recovered", "gw.container").len(),
        1,
        "its state's pass is not a second recovery"
    );

    // noport: restarted, its port never back: exactly one CRITICAL
    // recovery-failed, with the check's output, mention on Discord.
    sb.docker("kill noport");
    let failed = sb.wait_for(
        "noport.container recovery-failed",
        Duration::from_secs(20),
        || {
            events_of(&sb, "recovery-failed", "noport.container")
                .into_iter()
                .next()
        },
    );
    let msg = harness::field(&failed, "MESSAGE");
    assert!(
        msg.starts_with(
            "noport.container restarted but not ready within 3s: noport-port:tcp: fail"
        ),
        "{msg}"
    );
    assert!(events_of(&sb, "unit-recovered", "noport.container").is_empty());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        events_of(&sb, "recovery-failed", "noport.container").len(),
        1
    );
    sb.wait_for("the critical on discord", Duration::from_secs(10), || {
        let d = received(&sb, "/api/webhooks/1/");
        let ev = events(&d);
        (ev.iter().filter(|e| *e == "recovery-failed").count() == 1).then_some(d)
    });
    let d = received(&sb, "/api/webhooks/1/");
    let ev = events(&d);
    assert_eq!(
        ev.iter().filter(|e| *e == "recovery-failed").count(),
        1,
        "{ev:?}"
    );
    let crit = d
        .iter()
        .find(|r| events(std::slice::from_ref(r))[0] == "recovery-failed")
        .unwrap();
    let content = crit["body"]["content"].as_str().unwrap();
    assert!(content.starts_with("<@&4242> CRITICAL "), "{content}");
    // gw's recovery reached Discord as INFO.
    assert!(ev.iter().any(|e| e == "unit-recovered"), "{ev:?}");
}
