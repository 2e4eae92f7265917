"""report pipeline: needs a trained model (``best_checkpoint``) and the test evaluation's tables."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    build_category_report,
    checked_test_tables,
    plot_accuracy_histogram,
    plot_category_accuracy,
    plot_overlays,
    plot_seen_unseen,
    plot_threshold_sweep,
    plot_val_curves,
    report_model_passes,
    summarise_report,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                checked_test_tables,
                inputs=["best_checkpoint", "last_checkpoint", "test_metrics", "test_per_sketch", "test_per_category",
                        "params:model", "params:evaluation"],
                outputs=["report_checkpoint", "report_test_metrics", "report_test_per_sketch",
                         "report_test_per_category"],
                name="check_report_scoring",
            ),
            node(
                report_model_passes,
                inputs=[
                    "report_checkpoint",
                    "sketch_splits",
                    "params:model",
                    "params:evaluation",
                    "params:training",
                    "params:data",
                    "params:report",
                ],
                outputs=["report_overlay_samples", "threshold_sweep"],
                name="report_model_passes",
            ),
            node(plot_overlays, inputs=["report_overlay_samples", "params:report"],
                 outputs="report_overlays_plot", name="plot_report_overlays"),
            node(plot_accuracy_histogram, inputs=["report_test_per_sketch", "params:report"],
                 outputs="report_accuracy_histogram_plot", name="plot_report_accuracy_histogram"),
            node(build_category_report, inputs=["report_test_per_category", "sketch_prompts", "params:report"],
                 outputs="category_report", name="build_category_report"),
            node(plot_category_accuracy, inputs=["category_report", "params:report"],
                 outputs="report_category_accuracy_plot", name="plot_report_category_accuracy"),
            node(plot_seen_unseen, inputs="category_report",
                 outputs="report_seen_unseen_plot", name="plot_report_seen_unseen"),
            node(plot_threshold_sweep, inputs=["threshold_sweep", "params:evaluation"],
                 outputs="report_threshold_sweep_plot", name="plot_report_threshold_sweep"),
            node(plot_val_curves, inputs=["training_history", "report_test_metrics", "params:training"],
                 outputs="report_val_curves_plot", name="plot_report_val_curves"),
            node(summarise_report,
                 inputs=["report_test_per_sketch", "category_report", "threshold_sweep", "params:report"],
                 outputs="report_summary", name="summarise_report"),
        ]
    )
