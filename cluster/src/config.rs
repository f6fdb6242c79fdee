//! The `[cluster]` configuration section.

use serde::{Deserialize, Serialize};

/// The regions Herald runs in unless configured otherwise.
pub const DEFAULT_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Every region of the deployment; registrations' home regions must be one of them.
    pub regions: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            regions: DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        }
    }
}
