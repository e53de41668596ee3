//! The drill report as Markdown (for tickets and chat) and as one self-contained HTML page
//! (no scripts, no external files: it opens from an email attachment or an air-gapped
//! share), with the step timeline drawn to scale and the targets marked met or missed.

use std::fmt::Write;

use super::report::{DrillReport, Target};

fn seconds(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".to_string())
}

fn objective(t: &Target) -> String {
    t.objective_seconds
        .map(|o| format!("{o} s"))
        .unwrap_or_else(|| "none".to_string())
}

fn verdict(t: &Target) -> &'static str {
    if t.met { "met" } else { "missed" }
}

/// Markdown.
pub fn markdown(r: &DrillReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Drill {} of plan {}\n", r.run, r.plan);
    let _ = writeln!(
        s,
        "**{}** — from {} into **{}**, started {}.\n",
        if r.success { "Succeeded" } else { "Failed" },
        r.source.as_deref().unwrap_or("?"),
        r.target,
        r.started.to_rfc3339()
    );
    if !r.success {
        let _ = writeln!(s, "Why: {}\n", r.failure());
    }
    let _ = writeln!(s, "| target | objective | measured | result |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| RPO (age of the recovery point) | {} | {} | {} |",
        objective(&r.rpo),
        seconds(r.rpo.measured_seconds),
        verdict(&r.rpo)
    );
    let _ = writeln!(
        s,
        "| RTO (start → ready, less the volume read-back) | {} | {} | {} |\n",
        objective(&r.rto),
        seconds(r.rto.measured_seconds),
        verdict(&r.rto)
    );
    let _ = writeln!(
        s,
        "## Steps\n\n| # | step | state | start | duration | note |\n|---|---|---|---|---|---|"
    );
    for (i, st) in r.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | +{:.1} s | {:.1} s | {} |",
            i + 1,
            st.title,
            st.state,
            st.start_seconds,
            st.duration_seconds,
            st.message.clone().unwrap_or_default().replace('|', "\\|")
        );
    }
    if !r.recovery_points.is_empty() {
        let _ = writeln!(
            s,
            "\n## Recovery points\n\n| application | snapshot | taken | age |\n|---|---|---|---|"
        );
        for p in &r.recovery_points {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {:.1} s |",
                p.application,
                &p.snapshot[..p.snapshot.len().min(12)],
                p.time.to_rfc3339(),
                p.age_seconds
            );
        }
    }
    if !r.verification.is_empty() {
        let _ = writeln!(s, "\n## Verification\n");
        for (app, v) in &r.verification {
            let _ = writeln!(s, "- {app}: {}", v.summary());
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;color:#1d2330;padding:0 1rem}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}.sub{color:#5b6475}\
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;font-size:.9rem}\
.met,.ok{background:#dcf5e3;color:#146c2e}.missed,.bad{background:#fde0de;color:#9b1c13}\
.cards{display:flex;gap:1rem;margin:1.2rem 0;flex-wrap:wrap}.card{border:1px solid #d8dde6;border-radius:.6rem;padding:1rem 1.2rem;min-width:14rem}\
.card .v{font-size:1.8rem;font-weight:700}.card .o{color:#5b6475;font-size:.9rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e6e9ef;vertical-align:top}\
.timeline{position:relative;border-left:1px solid #c9ced8;margin:.5rem 0 1rem}.row{display:flex;align-items:center;height:1.6rem}\
.lbl{width:22rem;flex:none;font-size:.85rem;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding-right:.5rem}\
.track{position:relative;flex:1;height:1rem;background:#f3f5f8}.bar{position:absolute;top:0;height:1rem;border-radius:2px;min-width:2px}\
.Done{background:#3c8dde}.Skipped{background:#b8c0cc}.Failed{background:#d9342b}.Pending,.Running{background:#e8b339}\
.ready{position:absolute;top:-.3rem;bottom:-.3rem;width:2px;background:#146c2e}";

/// A self-contained HTML page.
pub fn html(r: &DrillReport) -> String {
    let total = r
        .steps
        .iter()
        .map(|s| s.start_seconds + s.duration_seconds)
        .fold(0.0f64, f64::max)
        .max(0.001);
    let pct = |v: f64| (v / total * 100.0).clamp(0.0, 100.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drill {run} — {plan}</title>\
         <style>{STYLE}</style></head><body>",
        run = esc(&r.run),
        plan = esc(&r.plan)
    );
    let _ = write!(
        s,
        "<h1>Drill of plan {plan} <span id=\"result\" class=\"badge {cls}\">{res}</span></h1>\
         <div class=\"sub\">run <code>{run}</code> · from {from} into <b>{target}</b> · started {start}</div>",
        plan = esc(&r.plan),
        cls = if r.success { "ok" } else { "bad" },
        res = if r.success { "Succeeded" } else { "Failed" },
        run = esc(&r.run),
        from = esc(r.source.as_deref().unwrap_or("?")),
        target = esc(&r.target),
        start = esc(&r.started.to_rfc3339())
    );
    if !r.success {
        let _ = write!(s, "<p id=\"why\" class=\"badge bad\">{}</p>", esc(&r.failure()));
    }
    let card = |id: &str, name: &str, what: &str, t: &Target| {
        format!(
            "<div class=\"card\" id=\"{id}\"><div>{name} <span class=\"badge {v}\">{v}</span></div>\
             <div class=\"v\">{m}</div><div class=\"o\">objective {o} · {what}</div></div>",
            v = verdict(t),
            m = esc(&seconds(t.measured_seconds)),
            o = esc(&objective(t))
        )
    };
    let _ = write!(
        s,
        "<div class=\"cards\">{}{}</div>",
        card("rpo", "RPO", "age of the recovery point", &r.rpo),
        card(
            "rto",
            "RTO",
            "start → application ready, less the volume read-back",
            &r.rto
        )
    );
    let _ = write!(s, "<h2>Timeline</h2><div class=\"timeline\">");
    for st in &r.steps {
        let _ = write!(
            s,
            "<div class=\"row step\"><div class=\"lbl\" title=\"{t}\">{t}</div><div class=\"track\">\
             <div class=\"bar {state}\" style=\"left:{l:.2}%;width:{w:.2}%\"></div>{ready}</div></div>",
            t = esc(&st.title),
            state = esc(&st.state),
            l = pct(st.start_seconds),
            w = pct(st.duration_seconds),
            ready = r
                .rto
                .measured_seconds
                .map(|m| format!("<div class=\"ready\" style=\"left:{:.2}%\"></div>", pct(m)))
                .unwrap_or_default()
        );
    }
    let _ = write!(s, "</div>");
    let _ = write!(
        s,
        "<table id=\"steps\"><tr><th>#</th><th>step</th><th>state</th><th>start</th><th>duration</th><th>note</th></tr>"
    );
    for (i, st) in r.steps.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>+{:.1} s</td><td>{:.1} s</td><td>{}</td></tr>",
            i + 1,
            esc(&st.title),
            esc(&st.state),
            st.start_seconds,
            st.duration_seconds,
            esc(st.message.as_deref().unwrap_or(""))
        );
    }
    let _ = write!(s, "</table>");
    if !r.recovery_points.is_empty() {
        let _ = write!(
            s,
            "<h2>Recovery points</h2><table><tr><th>application</th><th>snapshot</th><th>repository</th><th>taken</th><th>age</th></tr>"
        );
        for p in &r.recovery_points {
            let _ = write!(
                s,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1} s</td></tr>",
                esc(&p.application),
                esc(&p.snapshot[..p.snapshot.len().min(12)]),
                esc(&p.repository),
                esc(&p.time.to_rfc3339()),
                p.age_seconds
            );
        }
        let _ = write!(s, "</table>");
    }
    if !r.verification.is_empty() {
        let _ = write!(s, "<h2>Verification</h2><ul id=\"verification\">");
        for (app, v) in &r.verification {
            let _ = write!(s, "<li>{}: {}</li>", esc(app), esc(&v.summary()));
        }
        let _ = write!(s, "</ul>");
    }
    if !r.warnings.is_empty() {
        let _ = write!(s, "<h2>Notes</h2><ul>");
        for w in &r.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        let _ = write!(s, "</ul>");
    }
    let _ = writeln!(s, "</body></html>");
    s
}
