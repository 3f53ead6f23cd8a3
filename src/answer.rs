//! An answer to the survey, as the respondent gave it: one value per
//! question, keyed by the question's stable code. Plain data shared by the
//! form, the store, the export and the report; it carries nothing that could
//! identify the respondent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The value of one question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: the store's bincode cannot read internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A single choice; `other` is the free text of an option with a text field.
    Single { code: String, other: Option<String> },
    /// Several choices.
    Multi {
        codes: Vec<String>,
        other: Option<String>,
    },
    /// Free text.
    Text { text: String },
}

/// All values of one submission (unanswered optional questions are absent).
pub type Answers = BTreeMap<String, Value>;
