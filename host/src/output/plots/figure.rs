//! The one scaffold every figure is drawn on: a white SVG page, the plot area on the left and
//! the legend beside it (never on the data), the house style of its axes, and errors named
//! with the file.

use std::path::Path;

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{legend, Entry};
use super::PlotError;

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A chart on a figure's SVG page.
pub type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// What a figure's body returns: its legend entries, or why drawing failed.
pub type Body = Result<Vec<Entry>, String>;

/// A drawing error as the body reports it.
pub fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws a figure of `size` pixels at `path`: `body` draws on the plot area (the left
/// `plot_width` pixels; it gets the whole page too, for drawing in pixels) and returns the
/// legend, which goes on the right.
pub fn figure(
    path: &Path,
    size: (u32, u32),
    plot_width: u32,
    body: impl FnOnce(&Area, &Area) -> Body,
) -> Result<(), PlotError> {
    let err = |message: String| PlotError {
        path: path.to_path_buf(),
        message,
    };
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(fail).map_err(err)?;
    let (plot, key) = root.split_horizontally(plot_width);
    let entries = body(&plot, &root).map_err(err)?;
    legend(&key, &entries).map_err(fail).map_err(err)?;
    root.present().map_err(fail).map_err(err)
}

/// A chart on `area` with its title and the room for the axes' labels (x below, y left).
pub fn chart_on<'a, 'b, X: AsRangedCoord, Y: AsRangedCoord>(
    area: &'a Area<'b>,
    title: &str,
    title_size: u32,
    (x_labels, y_labels): (u32, u32),
    x: X,
    y: Y,
) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>, String> {
    ChartBuilder::on(area)
        .caption(title, ("sans-serif", title_size))
        .margin(14)
        .x_label_area_size(x_labels)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(x, y)
        .map_err(fail)
}

/// The house style of a chart's axes: no minor grid, 13 px labels, 14 px descriptions.
pub fn house_style<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged,
    Y: Ranged,
    DB: DrawingBackend,
{
    mesh.light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
}
