//! Running a comparison: the baseline and each strategy, per P count and workload.

use crate::floor::Floor;
use crate::plugin::Plugin;
use crate::runtime::Runtime;
use crate::workloads::{self, RunOptions, RunSummary, Workload};

use super::{
    CompareError, CompareOptions, Comparison, FloorResult, HandshakeFigures, HandshakeOutcome,
    Machine, Measurement, Outcome, Quantiles, Row, TracedFigures, WorkloadFigures,
    handshakes_under,
};

/// Runs the comparison; `step(label)` is called before each step, for progress.
pub fn compare(
    options: &CompareOptions,
    mut step: impl FnMut(&str),
) -> Result<Comparison, CompareError> {
    let mut floors = Vec::new();
    for floor in Floor::ALL {
        step(&format!("floor: {floor}"));
        let h = floor.histogram(options.floor_samples);
        floors.push(FloorResult {
            floor: floor.name().to_owned(),
            time: Quantiles::of(&h),
        });
    }
    let floor_p50 = |floor: Floor| {
        floors
            .iter()
            .find(|f| f.floor == floor.name())
            .map_or(1, |f| f.time.p50_ns.max(1))
    };
    let mut rows = Vec::new();
    for &procs in &options.procs {
        for &workload in &options.workloads {
            let (first, first_config) = &options.strategies[0];
            step(&format!("{procs} Ps, {workload}: mutators alone"));
            let baseline = run_one(first, first_config, procs, workload, (0, 0), options, false)?;
            for (plugin, config) in &options.strategies {
                step(&format!("{procs} Ps, {workload}: {}", plugin.name()));
                let floor = Floor::of(plugin.capabilities());
                let outcome = if plugin.capabilities().contains(workload.needs()) {
                    let barriers = options.barriers;
                    match run_one(
                        plugin,
                        config,
                        procs,
                        workload,
                        (barriers, 0),
                        options,
                        false,
                    ) {
                        Ok(summary) => {
                            let mut outcome = measured(&summary, &baseline, floor_p50(floor));
                            if options.traced
                                && let Outcome::Measured(m) = &mut outcome
                            {
                                step(&format!(
                                    "{procs} Ps, {workload}: {}, traced",
                                    plugin.name()
                                ));
                                match run_one(
                                    plugin,
                                    config,
                                    procs,
                                    workload,
                                    (barriers, 0),
                                    options,
                                    true,
                                ) {
                                    Ok(traced) => {
                                        m.traced = Some(TracedFigures::of(&traced, m.time.p50_ns));
                                    }
                                    Err(e) => {
                                        outcome = Outcome::Failed {
                                            error: format!("with tracing on: {e}"),
                                        };
                                    }
                                }
                            }
                            outcome
                        }
                        Err(e) => Outcome::Failed {
                            error: e.to_string(),
                        },
                    }
                } else {
                    Outcome::NotApplicable {
                        reason: format!(
                            "needs {}, which {} lacks",
                            workload.needs(),
                            plugin.name()
                        ),
                    }
                };
                let handshake = handshakes_under(plugin, procs, workload).then(|| {
                    step(&format!(
                        "{procs} Ps, {workload}: {} handshakes",
                        plugin.name()
                    ));
                    let signal_floor = floor_p50(Floor::Signal);
                    match run_handshakes(plugin, config, procs, workload, options) {
                        Ok(summary) => handshake_figures(&summary, signal_floor),
                        Err(e) => HandshakeOutcome::Failed {
                            error: e.to_string(),
                        },
                    }
                });
                rows.push(Row {
                    strategy: plugin.name().to_owned(),
                    procs,
                    workload: workload.name().to_owned(),
                    floor: floor.name().to_owned(),
                    outcome,
                    handshake,
                });
            }
        }
    }
    Ok(Comparison {
        machine: Machine::this_one(),
        served_ps: options.served_ps.name().to_owned(),
        floors,
        rows,
    })
}

pub(crate) fn run_one(
    plugin: &Plugin,
    config: &str,
    procs: usize,
    workload: Workload,
    (barriers, handshakes): (u64, u64),
    options: &CompareOptions,
    traced: bool,
) -> Result<RunSummary, CompareError> {
    let run_error = |error| CompareError::Run {
        strategy: plugin.name().to_owned(),
        procs,
        workload,
        error: Box::new(error),
    };
    let mut builder = Runtime::builder().procs(procs).served_ps(options.served_ps);
    if traced {
        builder = builder.trace(crate::trace::DEFAULT_CAPACITY);
    }
    let rt = builder.build(plugin, config).map_err(Box::new)?;
    let options = RunOptions {
        duration: Some(options.duration),
        params: options.params,
        handshakes,
        ..RunOptions::new(workload, barriers)
    };
    workloads::run(&rt, &options).map_err(run_error)
}

/// `workload` with `options.barriers` handshakes and no barrier, bounded by the row's time.
pub(crate) fn run_handshakes(
    plugin: &Plugin,
    config: &str,
    procs: usize,
    workload: Workload,
    options: &CompareOptions,
) -> Result<RunSummary, CompareError> {
    // A run of its own, so that the barrier row's mutator figures stay the barriers' own.
    run_one(
        plugin,
        config,
        procs,
        workload,
        (0, options.barriers),
        options,
        false,
    )
}

pub(crate) fn handshake_figures(summary: &RunSummary, signal_floor_p50: u64) -> HandshakeOutcome {
    let Some(handshakes) = &summary.handshakes else {
        return HandshakeOutcome::Failed {
            error: "the run performed no handshake".to_owned(),
        };
    };
    let h = &handshakes.latency;
    HandshakeOutcome::Measured(HandshakeFigures {
        handshakes: h.len(),
        time: Quantiles::of(h),
        by_itself: handshakes.by_itself,
        p50_over_signal_floor: h.value_at_quantile(0.5) as f64 / signal_floor_p50 as f64,
    })
}

pub(crate) fn measured(summary: &RunSummary, baseline: &RunSummary, floor_p50: u64) -> Outcome {
    let h = &summary.latency;
    let rate = |s: &RunSummary| s.work_units as f64 / s.elapsed.as_secs_f64().max(1e-9);
    let slowdown = if rate(baseline) > 0.0 {
        100.0 * (1.0 - rate(summary) / rate(baseline))
    } else {
        0.0
    };
    let barriers = h.len();
    Outcome::Measured(Measurement {
        barriers,
        time: Quantiles::of(h),
        p50_over_floor: h.value_at_quantile(0.5) as f64 / floor_p50 as f64,
        requester_cpu_ns: summary.requester_cpu.as_nanos() as u64 / barriers.max(1),
        mutator_slowdown_pct: slowdown,
        signals_sent: summary
            .counters
            .iter()
            .find(|(name, _)| name == "signals sent")
            .map(|(_, v)| *v),
        eintrs: summary.eintrs,
        served_waits_per_barrier: summary.served_ps.1.waits as f64 / barriers.max(1) as f64,
        metric: summary
            .metric
            .as_ref()
            .map(|metric| WorkloadFigures::of(metric, summary)),
        traced: None,
    })
}
