//! An issue's MIME prepared once for all its readers. Each part is rendered
//! once with sentinels where a reader's links go and encoded the way lettre
//! encodes it; per reader only the lines that carry a link are filled in and
//! encoded again (7bit and quoted-printable are line-local). The copy is byte
//! for byte what [`IssueMail::build`] makes — the tests hold it to that.
//! Where a splice cannot promise that, the copy is built as that function
//! builds it: every copy of an issue whose templates print the reader's name
//! or change a link, and a reader's links that would break a line; a part
//! lettre base64-encodes (not line-local) is encoded by lettre per reader.

use std::time::SystemTime;

use askama::filters::Escaper;
use email_encoding::body::Encoding;
use lettre::Message;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, MultiPart, SinglePart};

use super::issue::{IssueMail, Reader, RenderedIssue};
use super::{MailError, Mailer};

/// An issue with its parts prepared for splicing, or the reason its copies are built in full.
#[derive(Debug)]
pub struct PreparedIssue {
    issue: RenderedIssue,
    splice: Result<Splice, String>,
}

impl PreparedIssue {
    pub fn new(issue: RenderedIssue) -> Self {
        let splice = Splice::new(|reader| issue.render_for(reader));
        Self { issue, splice }
    }

    pub fn issue(&self) -> &RenderedIssue {
        &self.issue
    }

    /// Why every copy of this issue is built in full; `None`: copies are spliced.
    pub fn not_spliced(&self) -> Option<&str> {
        self.splice.as_ref().err().map(String::as_str)
    }

    /// The copy for `mail`'s reader (`mail.issue` must be this issue's;
    /// another issue's mail is built in full).
    pub fn build(&self, mail: &IssueMail<'_>, mailer: &Mailer) -> Result<Message, MailError> {
        self.build_framed(mail, mailer, None)
    }

    /// [`Self::build`] with the `Date` fixed; `None`: now.
    pub(crate) fn build_framed(
        &self,
        mail: &IssueMail<'_>,
        mailer: &Mailer,
        date: Option<SystemTime>,
    ) -> Result<Message, MailError> {
        match self.spliced(mail, mailer, date) {
            Some(message) => message,
            None => mail.build_framed(mailer, None, date),
        }
    }

    /// The spliced copy, or `None` when this copy must be built in full.
    fn spliced(
        &self,
        mail: &IssueMail<'_>,
        mailer: &Mailer,
        date: Option<SystemTime>,
    ) -> Option<Result<Message, MailError>> {
        if !std::ptr::eq(mail.issue, &self.issue) {
            return None;
        }
        let body = self.splice.as_ref().ok()?.body(&mail.reader())?;
        Some(mail.assemble(mailer, body, date))
    }
}

/// The parts of an issue ready for splicing, under one boundary.
#[derive(Debug)]
struct Splice {
    /// `multipart/alternative` with the issue's boundary, not yet holding its parts.
    alternative: MultiPart,
    text: PreparedPart,
    html: PreparedPart,
}

impl Splice {
    /// `render`: the issue's text and HTML parts for a reader.
    fn new(render: impl Fn(&Reader<'_>) -> Result<(String, String), askama::Error>) -> Result<Self, String> {
        let sentinels = Sentinels::new();
        let reader =
            Reader { name: None, unsubscribe_url: &sentinels.unsubscribe, preferences_url: &sentinels.preferences };
        let (text, html) = render(&reader).map_err(|e| format!("the templates fail: {e}"))?;
        let named = render(&Reader { name: Some(&sentinels.name), ..reader });
        if named.map_err(|e| format!("the templates fail: {e}"))? != (text.clone(), html.clone()) {
            return Err("the templates print the reader's name".to_owned());
        }
        let text = PreparedPart::new(&text, &sentinels)?;
        let html = PreparedPart::new(&html, &sentinels)?;
        // Links that need escaping, through the templates and through the splice.
        let probe = Reader {
            name: None,
            unsubscribe_url: "https://probe.invalid/u/a?b=1&c=<2>\"'",
            preferences_url: "https://probe.invalid/p?x='y'&z=\"w\"",
        };
        let (probe_text, probe_html) = render(&probe).map_err(|e| format!("the templates fail: {e}"))?;
        if text.raw.filled(&Links::text(&probe)) != probe_text || html.raw.filled(&Links::html(&probe)) != probe_html {
            return Err("the templates change the reader's links".to_owned());
        }
        Ok(Self { alternative: MultiPart::alternative().build(), text, html })
    }

    #[cfg(test)]
    fn boundary(&self) -> String {
        self.alternative.boundary()
    }

    /// Both parts for `reader`, or `None` when this copy must be built in full.
    fn body(&self, reader: &Reader<'_>) -> Option<MultiPart> {
        let text = self.text.fill(&Links::text(reader))?;
        let html = self.html.fill(&Links::html(reader))?;
        Some(self.alternative.clone().singlepart(SinglePart::plain(text)).singlepart(SinglePart::html(html)))
    }
}

/// Stand-ins for the reader's values, unique to one preparation: letters
/// and digits only, so no template escapes them and no encoding splits them.
struct Sentinels {
    unsubscribe: String,
    preferences: String,
    name: String,
}

impl Sentinels {
    fn new() -> Self {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Self {
            unsubscribe: format!("bulletinunsubscribe{nonce}"),
            preferences: format!("bulletinpreferences{nonce}"),
            name: format!("bulletinname{nonce}"),
        }
    }
}

/// Which of a reader's links goes in a place.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Unsubscribe,
    Preferences,
}

/// A reader's links as one part prints them: escaped for HTML, as they are for text.
struct Links {
    unsubscribe: String,
    preferences: String,
}

impl Links {
    fn text(reader: &Reader<'_>) -> Self {
        Self { unsubscribe: reader.unsubscribe_url.to_owned(), preferences: reader.preferences_url.to_owned() }
    }

    /// Escaped as askama escapes `{{ url }}` in an HTML template.
    fn html(reader: &Reader<'_>) -> Self {
        let escape = |url: &str| {
            let mut out = String::with_capacity(url.len() + 16);
            // Writing to a String cannot fail.
            let _ = askama::filters::Html.write_escaped_str(&mut out, url);
            out
        };
        Self { unsubscribe: escape(reader.unsubscribe_url), preferences: escape(reader.preferences_url) }
    }

    fn get(&self, slot: Slot) -> &str {
        match slot {
            Slot::Unsubscribe => &self.unsubscribe,
            Slot::Preferences => &self.preferences,
        }
    }

    /// A link that breaks a line would move the line cuts the encoded part is made of.
    fn one_line(&self) -> bool {
        !(self.unsubscribe.contains(['\r', '\n']) || self.preferences.contains(['\r', '\n']))
    }
}

/// A text cut where a reader's links go: `pieces[0]`, a link, `pieces[1]`, …
#[derive(Debug)]
struct Cut {
    pieces: Vec<String>,
    slots: Vec<Slot>,
}

impl Cut {
    fn new(text: &str, sentinels: &Sentinels) -> Self {
        let mut cut = Self { pieces: Vec::new(), slots: Vec::new() };
        let mut rest = text;
        loop {
            let next = [(Slot::Unsubscribe, &sentinels.unsubscribe), (Slot::Preferences, &sentinels.preferences)]
                .into_iter()
                .filter_map(|(slot, sentinel)| rest.find(sentinel.as_str()).map(|at| (at, slot, sentinel.len())))
                .min_by_key(|&(at, ..)| at);
            let Some((at, slot, len)) = next else { break };
            cut.pieces.push(rest[..at].to_owned());
            cut.slots.push(slot);
            rest = &rest[at + len..];
        }
        cut.pieces.push(rest.to_owned());
        cut
    }

    fn has_slots(&self) -> bool {
        !self.slots.is_empty()
    }

    fn fill_into(&self, links: &Links, out: &mut String) {
        out.push_str(&self.pieces[0]);
        for (slot, piece) in self.slots.iter().zip(&self.pieces[1..]) {
            out.push_str(links.get(*slot));
            out.push_str(piece);
        }
    }

    fn filled(&self, links: &Links) -> String {
        let mut out = String::with_capacity(self.pieces.iter().map(String::len).sum::<usize>() + 256);
        self.fill_into(links, &mut out);
        out
    }
}

/// One part, rendered with sentinels, and encoded in each line-local way
/// lettre may choose for it depending on the reader's links.
#[derive(Debug)]
struct PreparedPart {
    /// As rendered, before lettre's line-ending conversion: what lettre chooses the encoding from.
    raw: Cut,
    /// Encoded as 7bit; `None` when the part is not ASCII (no reader's copy can be 7bit).
    seven_bit: Option<Vec<Chunk>>,
    quoted_printable: Vec<Chunk>,
}

/// A run of an encoded part: lines without a link encoded once, or one line with links, encoded per reader.
#[derive(Debug)]
enum Chunk {
    Encoded(String),
    Line(Cut),
}

impl PreparedPart {
    /// `rendered`: the part as the templates render it with `sentinels` for the links.
    fn new(rendered: &str, sentinels: &Sentinels) -> Result<Self, String> {
        let crlf = encode(rendered.to_owned(), ContentTransferEncoding::Binary)?;
        let chunks = |encoding| -> Result<Vec<Chunk>, String> {
            let mut chunks = Vec::new();
            let mut encoded = String::new();
            for (i, line) in crlf.split("\r\n").enumerate() {
                if i > 0 {
                    encoded.push_str("\r\n");
                }
                let cut = Cut::new(line, sentinels);
                if cut.has_slots() {
                    chunks.push(Chunk::Encoded(std::mem::take(&mut encoded)));
                    chunks.push(Chunk::Line(cut));
                } else {
                    encoded.push_str(&encode_line(line, encoding)?);
                }
            }
            chunks.push(Chunk::Encoded(encoded));
            Ok(chunks)
        };
        let seven_bit = rendered.is_ascii().then(|| chunks(ContentTransferEncoding::SevenBit)).transpose()?;
        Ok(Self {
            raw: Cut::new(rendered, sentinels),
            seven_bit,
            quoted_printable: chunks(ContentTransferEncoding::QuotedPrintable)?,
        })
    }

    /// The part encoded for `links` as lettre encodes it; base64 (not
    /// line-local) is left to lettre. `None`: links that break lines.
    fn fill(&self, links: &Links) -> Option<Body> {
        if !links.one_line() {
            return None;
        }
        let raw = self.raw.filled(links);
        // The choice lettre makes in `Body::new`, from the copy as rendered.
        let (chunks, encoding) = match (Encoding::choose(raw.as_str(), false), &self.seven_bit) {
            (Encoding::SevenBit, Some(chunks)) => (chunks, ContentTransferEncoding::SevenBit),
            (Encoding::QuotedPrintable, _) => (&self.quoted_printable, ContentTransferEncoding::QuotedPrintable),
            _ => return Some(Body::new(raw)),
        };
        let mut out = String::with_capacity(chunks.iter().map(Chunk::len).sum::<usize>() + 512);
        let mut line = String::new();
        for chunk in chunks {
            match chunk {
                Chunk::Encoded(encoded) => out.push_str(encoded),
                Chunk::Line(cut) => {
                    line.clear();
                    cut.fill_into(links, &mut line);
                    out.push_str(&encode_line(&line, encoding).ok()?);
                }
            }
        }
        Some(Body::dangerous_pre_encoded(out.into_bytes(), encoding))
    }
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Self::Encoded(encoded) => encoded.len(),
            Self::Line(cut) => cut.pieces.iter().map(String::len).sum(),
        }
    }
}

/// One line (no CR LF in it) as lettre encodes it within a part: 7bit as
/// it is, quoted-printable through lettre's own encoder.
fn encode_line(line: &str, encoding: ContentTransferEncoding) -> Result<String, String> {
    match encoding {
        ContentTransferEncoding::SevenBit => Ok(line.to_owned()),
        _ => encode(line.to_owned(), encoding),
    }
}

/// `text` through lettre's body encoder (`Binary`: only its CR LF line endings).
fn encode(text: String, encoding: ContentTransferEncoding) -> Result<String, String> {
    let body = Body::new_with_encoding(text, encoding).map_err(|_| format!("lettre refuses {encoding:?}"))?;
    String::from_utf8(body.into_vec()).map_err(|_| format!("{encoding:?} made non-UTF-8 bytes"))
}

#[cfg(test)]
mod tests;
