//! How codecs look: a colour-blind-safe colour, a marker and a dash per codec, the same in
//! every figure, and the legend that names them.

use plotters::prelude::*;

use super::figure::Area;

/// Okabe & Ito's colour-blind-safe palette, without its yellow (unreadable on white).
pub const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::Cross,
];

/// Dash length and gap in pixels; 0 is a solid line.
const DASHES: [(u32, u32); 5] = [(0, 0), (9, 4), (3, 3), (16, 5), (6, 2)];

/// How codec `index` of a run is drawn: 35 codecs before a look repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub colour: RGBColor,
    pub shape: Shape,
    pub dash: (u32, u32),
}

pub fn look(index: usize) -> Look {
    let round = (index / COLOURS.len()) % SHAPES.len();
    Look {
        colour: COLOURS[index % COLOURS.len()],
        shape: SHAPES[round],
        dash: DASHES[round],
    }
}

pub type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A marker centred on `at` (pixels of the whole figure).
pub fn marker(root: &Area, at: (i32, i32), look: Look, r: i32) -> Drawn {
    let (x, y) = at;
    let fill = look.colour.filled();
    match look.shape {
        Shape::Circle => root.draw(&Circle::new(at, r, fill)),
        Shape::Square => root.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], fill)),
        Shape::Triangle => root.draw(&Polygon::new(
            vec![(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)],
            fill,
        )),
        Shape::Diamond => root.draw(&Polygon::new(
            vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ],
            fill,
        )),
        Shape::Cross => {
            let s = look.colour.stroke_width(3);
            root.draw(&PathElement::new(vec![(x - r, y - r), (x + r, y + r)], s))
                .and_then(|_| root.draw(&PathElement::new(vec![(x - r, y + r), (x + r, y - r)], s)))
        }
    }
}

/// A line in pixels, solid or dashed as the look says.
pub fn line(root: &Area, points: &[(i32, i32)], look: Look, width: u32) -> Drawn {
    let style = look.colour.stroke_width(width);
    if look.dash.0 == 0 {
        return root.draw(&PathElement::new(points.to_vec(), style));
    }
    let dashes = DashedLineSeries::new(
        points.iter().copied(),
        look.dash.0 as i32,
        look.dash.1 as i32,
        style,
    );
    dashes.into_iter().try_for_each(|d| root.draw(&d))
}

/// A codec's line with a marker on every `every`-th point (starting half a step in), so lines
/// of one colour are told apart in grey print too.
pub fn marked_line(root: &Area, pixels: &[(i32, i32)], look: Look, every: usize, r: i32) -> Drawn {
    line(root, pixels, look, 2)?;
    pixels
        .iter()
        .skip(every / 2)
        .step_by(every.max(1))
        .try_for_each(|&p| marker(root, p, look, r))
}

/// What a legend row shows of a look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    Marker,
    Line,
    LineAndMarker,
}

/// The legend, in columns on its own area: one row per entry, its sample and label.
pub fn legend(key: &Area, entries: &[Entry]) -> Drawn {
    let (w, h) = key.dim_in_pixel();
    let row = 17;
    let rows = ((h as i32 - 40) / row).max(1) as usize;
    let columns = entries.len().div_ceil(rows).max(1);
    let column_width = w as i32 / columns as i32;
    let font = ("sans-serif", 12).into_font();
    for (i, (label, look, sample)) in entries.iter().enumerate() {
        let x = 6 + (i / rows) as i32 * column_width;
        let y = 40 + (i % rows) as i32 * row;
        if *sample != Sample::Marker {
            line(key, &[(x, y), (x + 26, y)], *look, 2)?;
        }
        if *sample != Sample::Line {
            marker(key, (x + 13, y), *look, 4)?;
        }
        let room = ((column_width - 40) / 7).max(4) as usize;
        let text = if label.chars().count() > room {
            format!("{}…", label.chars().take(room - 1).collect::<String>())
        } else {
            label.clone()
        };
        key.draw(&Text::new(text, (x + 34, y - 7), font.clone()))?;
    }
    Ok(())
}

/// A legend row: the label and how its sample is drawn.
pub type Entry = (String, Look, Sample);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_do_not_repeat_within_thirty_five_codecs() {
        let looks: Vec<Look> = (0..35).map(look).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(!looks[i + 1..].contains(a), "codec {i}");
        }
    }
}
