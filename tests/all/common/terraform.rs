//! Real Terraform 1.0.3 in a scratch working directory, whatever its backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Terraform, or `None` (with a message) when it is not installed outside CI; under `CI` a
/// missing Terraform fails the test.
pub fn terraform_or_skip(test: &str) -> Option<PathBuf> {
    match super::terraform_binary() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but Terraform is not installed: .ci/run installs it (or set STATEPLUG_TERRAFORM)"
            )
        }
        None => {
            eprintln!(
                "SKIPPED {test}: Terraform not found; run .ci/run once or set STATEPLUG_TERRAFORM"
            );
            None
        }
    }
}

/// A Terraform working directory with one `main.tf`; `init` has run.
pub struct Project {
    terraform: PathBuf,
    pub dir: tempfile::TempDir,
    isolate: Isolate,
}

/// Adjusts the environment of every command (e.g. a clean AWS environment, a CA to trust).
type Isolate = Box<dyn Fn(&mut Command, &Path)>;

impl Project {
    /// Writes `main_tf` into a fresh directory and runs `terraform init`.
    pub fn init(
        terraform: &Path,
        main_tf: &str,
        isolate: impl Fn(&mut Command, &Path) + 'static,
    ) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), main_tf).unwrap();
        let project = Project {
            terraform: terraform.to_path_buf(),
            dir,
            isolate: Box::new(isolate),
        };
        project.ok(&["init", "-input=false", "-no-color"]);
        project
    }

    /// Runs `terraform <args>` without prompts or version checks.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.terraform);
        (self.isolate)(&mut command, self.dir.path());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .output()
            .expect("terraform runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "terraform {args:?} failed:\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `apply -auto-approve -lock-timeout=0s -var greeting=<greeting>`.
    pub fn apply(&self, greeting: &str) -> Output {
        let var = format!("greeting={greeting}");
        self.run(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=0s",
            "-var",
            &var,
        ])
    }

    /// `state pull` of the current workspace.
    pub fn pull(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", "pull"])).unwrap()
    }

    /// `state push -force` of `state`.
    pub fn push_forced(&self, state: &Value) -> Output {
        let file = self.dir.path().join("pushed.tfstate");
        std::fs::write(&file, state.to_string()).unwrap();
        self.run(&[
            "state",
            "push",
            "-force",
            "-no-color",
            file.to_str().unwrap(),
        ])
    }
}

/// Stdout and stderr of a run, for assertions on messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The configuration shared by the Terraform tests: `backend_block` (a `terraform { ... }`
/// block) and one output from a variable, so `terraform init` downloads no provider.
pub fn main_tf(backend_block: &str) -> String {
    format!(
        "{backend_block}\nvariable \"greeting\" {{\n  default = \"hello\"\n}}\n\noutput \"greeting\" {{\n  \
         value = var.greeting\n}}\n"
    )
}
