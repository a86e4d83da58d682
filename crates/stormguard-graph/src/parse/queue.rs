//! A service's queue keys: `queue_discipline`, `codel = { target, interval }` and
//! `queue_timeout`.
//!
//! Strict like every other key: a discipline the simulator does not know, a `codel` table
//! beside another discipline (it would be silently ignored, and the author believes the queue
//! is controlled), or a target not below its interval (the queue would never count as
//! overloaded before its requests were already past the target) are refused at their line.

use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::ranges::{CODEL_DELAY, TIMEOUT};
use super::raw::{DurationText, RawCodel};
use super::ParseError;
use crate::model::{Codel, QueueDiscipline};

/// The names `queue_discipline` takes, as an error lists them.
const DISCIPLINES: &str = "\"fifo\", \"lifo\" or \"codel\"";

impl Converter<'_> {
    /// `queue_discipline` with its `codel` table, and `queue_timeout`, of the service at `path`.
    pub(super) fn queue_keys(
        &self,
        discipline: Option<&Spanned<String>>,
        codel: Option<Spanned<RawCodel>>,
        timeout: Option<&Spanned<DurationText>>,
        path: &KeyPath,
    ) -> Result<(QueueDiscipline, Option<std::time::Duration>), ParseError> {
        let name = discipline.map_or("fifo", |d| d.get_ref().as_str());
        if !matches!(name, "fifo" | "lifo" | "codel") {
            let at = discipline.map_or(0, |d| d.span().start);
            return Err(self.error(
                at,
                &path.key("queue_discipline"),
                format!("{name:?} is not a queue discipline: use {DISCIPLINES}"),
            ));
        }
        let discipline = match (name, codel) {
            ("codel", codel) => QueueDiscipline::Codel(self.codel(codel, path)?),
            (_, Some(codel)) => {
                return Err(self.error(
                    codel.span().start,
                    &path.key("codel"),
                    format!(
                        "codel settings on a {name:?} queue do nothing: set queue_discipline = \
                         \"codel\" to use them, or remove codel"
                    ),
                ))
            }
            ("lifo", None) => QueueDiscipline::Lifo,
            _ => QueueDiscipline::Fifo,
        };
        let timeout = self.optional_duration(timeout, path, "queue_timeout", &TIMEOUT)?;
        Ok((discipline, timeout))
    }

    /// `codel = { target, interval }`, Facebook's defaults for what it leaves out.
    fn codel(&self, raw: Option<Spanned<RawCodel>>, parent: &KeyPath) -> Result<Codel, ParseError> {
        let defaults = Codel::default();
        let Some(raw) = raw else {
            return Ok(defaults);
        };
        let path = &parent.key("codel");
        let raw = raw.into_inner();
        let target = self.duration_or(
            raw.target.as_ref(),
            path,
            "target",
            &CODEL_DELAY,
            defaults.target,
        )?;
        let interval = self.duration_or(
            raw.interval.as_ref(),
            path,
            "interval",
            &CODEL_DELAY,
            defaults.interval,
        )?;
        if target >= interval {
            let (at, key) = match (&raw.target, &raw.interval) {
                (_, Some(interval)) => (interval.span().start, "interval"),
                (Some(target), None) => (target.span().start, "target"),
                (None, None) => unreachable!("the defaults are in order"),
            };
            let format = stormguard::duration::format;
            return Err(self.error(
                at,
                &path.key(key),
                format!(
                    "target {} is not below interval {}: the queue counts as overloaded only \
                     after a whole interval without emptying, so the target must be shorter \
                     (Facebook's: target = \"5ms\", interval = \"100ms\")",
                    format(target),
                    format(interval)
                ),
            ));
        }
        Ok(Codel { target, interval })
    }
}
