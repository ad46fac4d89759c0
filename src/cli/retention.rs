//! `tagwarden retention [--dry-run]`: what the `[[retention.rules]]` of the running
//! tagwarden select, and why the rest stays; without `--dry-run`, retire it (admin
//! token, through the API, each retirement recorded like `tagwarden retire`).

use clap::Args;

use super::admin_api::AdminApi;
use super::audit::Table;
use crate::api::retention::RetentionPlan;
use crate::retention::Outcome;

#[derive(Args)]
pub struct RetentionArgs {
    /// List what would be retired and why the rest stays; retire nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    admin: AdminApi,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

impl RetentionArgs {
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let client = self.admin.client()?;
        let body = serde_json::json!({ "dry_run": self.dry_run });
        let plan: RetentionPlan = client.post("retention", &body).await?;
        if self.json {
            println!("{}", serde_json::to_string(&plan)?);
        } else {
            print!("{}", table(&plan));
        }
        let failed = plan
            .releases
            .iter()
            .any(|p| matches!(p.outcome, Some(Outcome::Failed(_))));
        Ok(if failed {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        })
    }
}

/// One line per release: what happens to it (`retire`, `keep`; after a real pass
/// `retired` or `failed`), the release, its rule and why.
fn table(plan: &RetentionPlan) -> String {
    let mut t = Table::new(&["ACTION", "RELEASE", "DIGEST", "RULE", "WHY"]);
    for p in &plan.releases {
        let (action, why) = match (&p.outcome, p.retire) {
            (Some(Outcome::Retired), _) => ("retired", p.why.clone()),
            (Some(Outcome::Failed(e)), _) => ("failed", format!("{}: {e}", p.why)),
            (None, true) => ("retire", p.why.clone()),
            (None, false) => ("keep", p.why.clone()),
        };
        t.row(vec![
            action.into(),
            format!("{}:{}", p.repository, p.tag),
            p.digest.chars().take(19).collect(),
            p.rule.clone(),
            why,
        ]);
    }
    let mut out = t.render();
    let going = plan.releases.iter().filter(|p| p.retire).count();
    out.push_str(&format!(
        "{going} of {} release(s) {}\n",
        plan.releases.len(),
        if plan.dry_run {
            "would be retired (dry run)"
        } else {
            "selected for retirement"
        }
    ));
    out
}
