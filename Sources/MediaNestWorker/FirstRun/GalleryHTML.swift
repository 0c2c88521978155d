import Foundation
import MediaNestCore

/// The gallery page: a pure function from items (and the gallery-relative paths of their copied
/// files) to one self-contained HTML document. No external resources, and JavaScript only for a
/// Live Photo's hover (``liveScript``); every text from the database goes through ``escape(_:)``,
/// and every URL in the page is one the writer built itself (`media/<uuid>/<role>.<ext>`), never
/// a path from the database.
public enum GalleryHTML {
    /// The motion half of a Live Photo, shown on its still's card.
    public struct Motion: Sendable {
        /// The video item (`metadata.live_photo.role = "motion"`); it gets no card of its own.
        public var item: GalleryItem
        /// Gallery-relative URL of the copied video and its MIME type.
        public var url: String
        public var mime: String
        /// Whether it is a web rendition (else the original, which Chromium plays as is).
        public var isRendition: Bool
        public init(item: GalleryItem, url: String, mime: String, isRendition: Bool) {
            self.item = item
            self.url = url
            self.mime = mime
            self.isRendition = isRendition
        }
    }

    /// One item and the files the writer copied for it.
    public struct Card: Sendable {
        /// The item.
        public var item: GalleryItem
        /// Gallery-relative URLs of the copied thumbnail and preview.
        public var thumbnail: String?
        public var preview: String?
        /// The sheet description and the copied sheets' URLs.
        public var trickplay: (info: TrickplayInfo, sheets: [String])?
        /// Source URL, MIME type, and whether it is a rendition (else the original).
        public var playable: (url: String, mime: String, isRendition: Bool)?
        /// For the still of a Live Photo: its motion video, played over the still on hover.
        public var motion: Motion?
        /// For a motion photo (Samsung or Google): the clip the metadata job extracted from the
        /// file (`metadata.motion_photo`), played over the still on hover like a Live Photo's.
        public var embeddedClip: (url: String, mime: String)?
        public init(item: GalleryItem) { self.item = item }
    }

    /// Escapes text for HTML content and quoted attribute values.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters (a newline in a file name) would be invisible or break the
                // layout: show them as escapes, as the logs do.
                if scalar.properties.generalCategory == .control {
                    out += escape(String(scalar).escapingControlCharacters())
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// The error codes of docs/METADATA.md (and the media handlers'), in words.
    public static func explain(code: String) -> String {
        switch code {
        case "corrupt_media": return "The file is damaged or incomplete, so it cannot be played or shown."
        case "unsupported_format": return "This format is not supported."
        case "mime_mismatch": return "This file is not a photo, video or song."
        case "empty_file": return "The file is empty."
        case "file_missing": return "The file is missing from storage."
        case "too_large": return "The file is larger than the configured limit."
        case "pixel_limit": return "The picture is larger than the configured pixel limit."
        case "duration_limit": return "The recording is longer than the configured limit."
        case "not_a_regular_file": return "The storage path does not name a regular file."
        case "path_outside_storage": return "The storage path points outside the storage root."
        case "file_changed": return "The file changed while it was being read; it will be tried again."
        case "timeout": return "Processing took too long and was stopped."
        case "cancelled": return "Processing was cancelled by an operator."
        case "io_error": return "The file could not be read from storage."
        case "lost_worker", "worker_lost": return "The worker processing it stopped unexpectedly, more than once."
        default: return "Processing failed."
        }
    }

    /// Renders the page.
    public static func render(_ cards: [Card], generatedAt: Date) -> String {
        // Items, not tiles: a Live Photo's motion video is counted though it shares its still's.
        let items = cards.flatMap { [$0.item] + ($0.motion.map { [$0.item] } ?? []) }
        let ready = items.filter { $0.status == "ready" }.count
        let failed = items.filter { $0.status == "error" }.count
        let busy = items.count - ready - failed
        let live = cards.filter { $0.motion != nil }.count
        let clips = cards.filter { $0.motion == nil && $0.embeddedClip != nil }.count
        let liveNote = (live == 0 ? "" : "; \(live) Live Photo\(live == 1 ? "" : "s") (a still and its video, one tile that plays on hover)")
            + (clips == 0 ? "" : "; \(clips) motion photo\(clips == 1 ? "" : "s") (the clip inside the photo plays on hover)")
        let formatter = ISO8601DateFormatter()
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>MediaNest library</title>
            <link rel="icon" href="data:,">
            <style>\(css)</style>
            </head>
            <body>
            <header>
            <h1>MediaNest library</h1>
            <p class="summary">\(items.count) item\(items.count == 1 ? "" : "s"): \(ready > 0 ? "<span class=\"ok\">\(ready) ready</span>" : "0 ready")\
            \(failed > 0 ? ", <span class=\"bad\">\(failed) failed</span>" : "")\(busy > 0 ? ", \(busy) not finished" : "")\
            \(liveNote). \
            Generated \(escape(formatter.string(from: generatedAt))) by <code>medianest-worker gallery</code>.</p>
            </header>
            <main>

            """
        let names = Dictionary(cards.map { ($0.item.id, $0.item.name) }, uniquingKeysWith: { first, _ in first })
        for card in cards { html += renderCard(card, names: names) }
        html += "</main>\n"
        if live + clips > 0 { html += "<script>\(liveScript)</script>\n" }
        html += "</body>\n</html>\n"
        return html
    }

    static func renderCard(_ card: Card, names: [String: String] = [:]) -> String {
        let item = card.item
        let name = escape(item.name)
        var html = "<article class=\"card \(escape(item.kind)) status-\(escape(item.status))\" id=\"item-\(escape(item.id))\">\n"
        let picture = card.preview ?? card.thumbnail
        let what = card.preview != nil ? "Preview" : "Thumbnail"
        if let motion = card.motion, let picture {
            // The still, and its motion video over it, hidden until the picture is hovered or
            // focused (liveScript); muted and inline so a browser lets it start without a click.
            html += "<div class=\"visual live\" data-live>\n"
            html += "<a href=\"\(escape(picture))\"><img src=\"\(escape(picture))\" alt=\"\(what) of \(name)\"></a>\n"
            html += "<video class=\"motion\" muted playsinline loop preload=\"auto\" disableremoteplayback aria-label=\"Live Photo motion of \(name)\">"
                + "<source src=\"\(escape(motion.url))\" type=\"\(escape(motion.mime))\"></video>\n"
            html += "<span class=\"live-badge\" title=\"Live Photo: hover to play\">\(liveIcon)LIVE</span>\n"
        } else if let clip = card.embeddedClip, let picture {
            // A motion photo: the same tile as a Live Photo's, with the clip from inside the file.
            html += "<div class=\"visual live\" data-live>\n"
            html += "<a href=\"\(escape(picture))\"><img src=\"\(escape(picture))\" alt=\"\(what) of \(name)\"></a>\n"
            html += "<video class=\"motion\" muted playsinline loop preload=\"auto\" disableremoteplayback aria-label=\"Motion photo clip of \(name)\">"
                + "<source src=\"\(escape(clip.url))\" type=\"\(escape(clip.mime))\"></video>\n"
            html += "<span class=\"live-badge\" title=\"Motion photo: hover to play\">\(liveIcon)MOTION</span>\n"
        } else if let playable = card.playable, item.kind == "video" {
            let poster = picture.map { " poster=\"\(escape($0))\"" } ?? ""
            html += "<div class=\"visual\">\n"
            html += "<video controls preload=\"auto\" muted playsinline\(poster) aria-label=\"\(name)\"><source src=\"\(escape(playable.url))\" type=\"\(escape(playable.mime))\"></video>\n"
        } else if let picture {
            html += "<div class=\"visual\">\n"
            html += "<a href=\"\(escape(picture))\"><img src=\"\(escape(picture))\" alt=\"\(what) of \(name)\"></a>\n"
        } else {
            html += "<div class=\"visual\">\n"
            html += "<div class=\"placeholder\" role=\"img\" aria-label=\"No picture for \(name)\">\(placeholderIcon(item))</div>\n"
        }
        html += "</div>\n<div class=\"body\">\n"
        html += "<h2 title=\"\(name)\">\(name)</h2>\n"
        html += "<p class=\"badges\"><span class=\"kind\">\(escape(item.kind))</span> <span class=\"status\">\(escape(statusWord(item.status)))</span>"
        if let playable = card.playable { html += " <span class=\"note\">\(playable.isRendition ? "web rendition" : "original plays as is")</span>" }
        if card.motion != nil { html += " <span class=\"note live-note\">live photo</span>" }
        else if card.embeddedClip != nil { html += " <span class=\"note live-note\">motion photo</span>" }
        html += "</p>\n"
        html += renderDuplicates(item, names: names)
        if let playable = card.playable, item.kind == "audio" {
            html += "<audio controls preload=\"metadata\" src=\"\(escape(playable.url))\" aria-label=\"Play \(name)\"></audio>\n"
        }

        let failures = item.jobs.filter { $0.status == "failed" }
        if !failures.isEmpty || item.status == "error" {
            html += "<div class=\"error\" role=\"alert\">\n"
            // (code, message, job types): one paragraph per distinct failure, so a broken file that
            // fails all four of its jobs for the same reason says it once.
            var reasons: [(code: String, message: String, types: [String])] = []
            func add(_ code: String, _ message: String, _ type: String) {
                if let i = reasons.firstIndex(where: { $0.code == code && $0.message == message }) {
                    reasons[i].types.append(type)
                } else {
                    reasons.append((code, message, [type]))
                }
            }
            for job in failures { add(job.errorCode ?? "internal_error", job.errorMessage ?? "", job.type) }
            if reasons.isEmpty, let errors = item.processingInfo["errors"]?.objectValue {
                for (type, error) in errors.sorted(by: { $0.key < $1.key }) {
                    add(error["code"]?.stringValue ?? "internal_error", error["message"]?.stringValue ?? "", type)
                }
            }
            for reason in reasons {
                let jobs = reason.types.joined(separator: ", ") + (reason.types.count == 1 ? " job" : " jobs")
                html += "<p><strong>\(escape(explain(code: reason.code)))</strong> <span class=\"detail\">\(escape(reason.message)) (\(escape(jobs)), <code>\(escape(reason.code))</code>)</span></p>\n"
            }
            html += "</div>\n"
        }

        if let thumbnail = card.thumbnail, card.preview != nil || item.kind == "video" {
            html += "<figure class=\"thumb\"><img src=\"\(escape(thumbnail))\" alt=\"Thumbnail of \(name)\"><figcaption>thumbnail</figcaption></figure>\n"
        }
        if let (info, sheets) = card.trickplay { html += renderTrickplay(info, sheets: sheets, name: name) }
        html += renderTable(item, motion: card.motion, names: names)
        html += "<details><summary>All metadata (JSON)</summary><pre>\(escape(item.metadata.jsonText))</pre></details>\n"
        if let motion = card.motion {
            html += "<details><summary>Motion video metadata (JSON)</summary><pre>\(escape(motion.item.metadata.jsonText))</pre></details>\n"
        }
        html += "</div>\n</article>\n"
        return html
    }

    /// "Duplicate of" / "similar to" links to the other cards of the item's duplicate group.
    static func renderDuplicates(_ item: GalleryItem, names: [String: String]) -> String {
        guard let group = item.duplicates, !group.others.isEmpty else { return "" }
        let label = group.kind == .exact ? "Same file as" : "Looks like"
        let links = group.others.map { id in
            "<a href=\"#item-\(escape(id))\">\(escape(names[id] ?? id))</a>"
        }.joined(separator: ", ")
        return "<p class=\"duplicate \(group.kind.rawValue)\"><span>\(group.kind == .exact ? "duplicate" : "similar")</span> \(label) \(links)</p>\n"
    }

    static func statusWord(_ status: String) -> String {
        switch status {
        case "ready": return "ready"
        case "error": return "failed"
        case "processing": return "processing"
        default: return status
        }
    }

    static func placeholderIcon(_ item: GalleryItem) -> String {
        switch item.kind {
        case "audio": return "♪"
        case "video": return "▶"
        case "image": return "▣"
        default: return "?"
        }
    }

    /// Up to 12 tiles spread over the whole strip, each a CSS sprite of its sheet.
    static func renderTrickplay(_ info: TrickplayInfo, sheets: [String], name: String) -> String {
        let perSheet = info.columns * info.rows
        let available = min(info.count, perSheet * sheets.count)
        guard available > 0 else { return "" }
        let shown = min(12, available)
        let scale = 96.0 / Double(info.tileWidth)
        let width = 96
        let height = max(1, Int((Double(info.tileHeight) * scale).rounded()))
        var times: [String] = []
        var tiles = ""
        for n in 0..<shown {
            let index = shown == 1 ? 0 : n * (available - 1) / (shown - 1)
            let sheet = sheets[index / perSheet]
            let within = index % perSheet
            let x = Double((within % info.columns) * info.tileWidth) * scale
            let y = Double((within / info.columns) * info.tileHeight) * scale
            // The width is always `columns` tiles; the last sheet is only as tall as the rows it
            // uses, so its height is left to the image (`auto`), never assumed.
            let sheetWidth = Double(info.columns * info.tileWidth) * scale
            let time = info.interval > 0 ? clock(Double(index) * info.interval) : "#\(index + 1)"
            times.append(time)
            tiles += "<span class=\"tile\" title=\"\(time)\" style=\"width:\(width)px;height:\(height)px;background-image:url('\(escape(sheet))');"
                + "background-size:\(Int(sheetWidth.rounded()))px auto;background-position:-\(Int(x.rounded()))px -\(Int(y.rounded()))px\"></span>"
        }
        return "<div class=\"trickplay\" role=\"img\" aria-label=\"Frames of \(name) at \(times.joined(separator: ", "))\">\(tiles)</div>\n"
            + "<p class=\"caption\">trickplay: \(info.count) frames\(info.interval > 0 ? ", one every \(trim(info.interval)) s" : ""), \(info.sheets.count) sheet\(info.sheets.count == 1 ? "" : "s")</p>\n"
    }

    static func renderTable(_ item: GalleryItem, motion: Motion? = nil, names: [String: String] = [:]) -> String {
        let m = item.metadata
        var rows: [(String, String)] = []
        if let motion {
            var parts = ["motion \(motion.item.name)"]
            if let d = motion.item.metadata["duration"]?.doubleValue { parts.append(clock(d)) }
            parts.append(motion.isRendition ? "web rendition" : "original plays as is")
            rows.append(("Live Photo", parts.joined(separator: " · ")))
        } else if m["live_photo"]?["role"]?.stringValue == "motion", let still = m["live_photo"]?["still_id"]?.stringValue {
            rows.append(("Live Photo", "motion of \(names[still] ?? still)"))
        }
        if let clip = m["motion_photo"]?.objectValue {
            // What the metadata job found inside the file, or why it kept only the still.
            if let error = clip["error"]?["message"]?.stringValue {
                rows.append(("Motion photo", "the still only: \(error)"))
            } else if clip["file"] != nil {
                var parts = [clip["codec"]?.stringValue.map { $0 == "h264" ? "H.264" : $0 } ?? "video"]
                if let w = clip["width"]?.intValue, let h = clip["height"]?.intValue { parts.append("\(w) × \(h)") }
                if let d = clip["duration"]?.doubleValue { parts.append(clock(d)) }
                if let layout = clip["layout"]?.stringValue { parts.append(layout) }
                rows.append(("Motion photo", parts.joined(separator: " · ")))
            }
        }
        rows.append(("Type", m["mime_sniffed"]?.stringValue ?? item.mimeType))
        if let size = item.size { rows.append(("Size", ByteCountFormatter.string(fromByteCount: size, countStyle: .file))) }
        if let w = m["width"]?.intValue, let h = m["height"]?.intValue { rows.append(("Dimensions", "\(w) × \(h)")) }
        if let d = m["duration"]?.doubleValue { rows.append(("Duration", clock(d))) }
        if let c = m["container"]?.stringValue { rows.append(("Container", c)) }
        var codecs: [String] = []
        if let v = m["video_codec"]?.stringValue { codecs.append(v + (m["bit_depth"]?.intValue.map { " \($0)-bit" } ?? "") + (m["hdr"]?.boolValue == true ? " HDR" : "")) }
        if let a = m["audio_codec"]?.stringValue {
            var audio = a
            if let rate = m["audio"]?["sample_rate"]?.intValue { audio += rate % 1000 == 0 ? " \(rate / 1000) kHz" : " \(Double(rate) / 1000) kHz" }
            if let layout = m["audio"]?["layout"]?.stringValue { audio += " \(layout)" }
            codecs.append(audio)
        }
        if !codecs.isEmpty { rows.append(("Codecs", codecs.joined(separator: ", "))) }
        if let fps = m["frame_rate"]?.doubleValue { rows.append(("Frame rate", "\(trim(fps)) fps")) }
        if let r = m["rotation"]?.intValue, r != 0 { rows.append(("Rotation", "\(r)°")) }
        if let o = m["orientation"]?.intValue, o != 1 { rows.append(("EXIF orientation", "\(o)")) }
        if let t = m["taken_at"]?.stringValue { rows.append(("Taken", t)) }
        let camera = [m["camera"]?["make"]?.stringValue, m["camera"]?["model"]?.stringValue].compactMap { $0 }
        if !camera.isEmpty { rows.append(("Camera", camera.joined(separator: " "))) }
        if let lat = m["gps"]?["lat"]?.doubleValue, let lon = m["gps"]?["lon"]?.doubleValue {
            rows.append(("Location", String(format: "%.5f, %.5f", lat, lon)))
        }
        for key in ["title", "artist", "album", "date"] {
            if let value = m["tags"]?[key]?.stringValue { rows.append((key.capitalized, value)) }
        }
        if let cover = m["cover_art"]?.boolValue { rows.append(("Cover art", cover ? "yes" : "no")) }
        if m["thumbhash"]?.stringValue != nil { rows.append(("Placeholder", "ThumbHash")) }
        for rendition in item.processingInfo["renditions"]?.arrayValue ?? [] {
            var parts: [String] = []
            if let c = rendition["container"]?.stringValue { parts.append(c) }
            let codecs = [rendition["video_codec"]?.stringValue, rendition["audio_codec"]?.stringValue].compactMap { $0 }
            if !codecs.isEmpty { parts.append(codecs.joined(separator: "/")) } else if let c = rendition["codecs"]?.stringValue { parts.append(c) }
            if let w = rendition["width"]?.intValue, let h = rendition["height"]?.intValue { parts.append("\(w)×\(h)") }
            if let b = rendition["bitrate"]?.doubleValue { parts.append("\(Int(b / 1000)) kb/s") }
            if let s = rendition["size"]?.intValue { parts.append(ByteCountFormatter.string(fromByteCount: s, countStyle: .file)) }
            rows.append(("Rendition", parts.joined(separator: " · ")))
        }
        if let sha = item.sha256 { rows.append(("SHA-256", String(sha.prefix(16)) + "…")) }
        let jobs = item.jobs.map { "\($0.type) \(statusWord($0.status))" }.joined(separator: ", ")
        if !jobs.isEmpty { rows.append(("Jobs", jobs)) }
        var html = "<table>\n"
        for (label, value) in rows {
            html += "<tr><th scope=\"row\">\(escape(label))</th><td>\(escape(value))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// `1:05.2`, `0:02.0`.
    static func clock(_ seconds: Double) -> String {
        let value = max(0, seconds)
        let minutes = Int(value) / 60
        let rest = value - Double(minutes * 60)
        if minutes >= 60 { return String(format: "%d:%02d:%04.1f", minutes / 60, minutes % 60, rest) }
        return String(format: "%d:%04.1f", minutes, rest)
    }

    static func trim(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value).replacingOccurrences(of: #"0+$"#, with: "", options: .regularExpression)
    }

    /// Apple's Live Photo mark: a dot, a ring and a dotted ring.
    static let liveIcon = "<svg viewBox=\"0 0 16 16\" width=\"13\" height=\"13\" aria-hidden=\"true\"><circle cx=\"8\" cy=\"8\" r=\"2\" fill=\"currentColor\"/>"
        + "<circle cx=\"8\" cy=\"8\" r=\"4.2\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.3\"/>"
        + "<circle cx=\"8\" cy=\"8\" r=\"6.9\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.3\" stroke-dasharray=\"1.2 1.5\"/></svg>"

    /// A Live Photo's tile plays its motion from the start while the pointer is over it or the
    /// keyboard focus is in it, and shows the still again when it leaves. A browser that refuses
    /// to play keeps the still.
    static let liveScript = """
        document.querySelectorAll('[data-live]').forEach(function (tile) {
          var video = tile.querySelector('video.motion');
          if (!video) return;
          function play() {
            video.currentTime = 0;
            var started = video.play();
            tile.classList.add('playing');
            if (started && started.catch) started.catch(function () { tile.classList.remove('playing'); });
          }
          function still() {
            video.pause();
            video.currentTime = 0;
            tile.classList.remove('playing');
          }
          tile.addEventListener('mouseenter', play);
          tile.addEventListener('mouseleave', still);
          tile.addEventListener('focusin', play);
          tile.addEventListener('focusout', still);
        });
        """

    static let css = """
        :root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#5b6475;--line:#e2e5ea;--ok:#19753c;--bad:#b42318;--accent:#3856d8}
        @media (prefers-color-scheme:dark){:root{--bg:#14161b;--card:#1d2027;--ink:#e7e9ee;--muted:#9aa3b2;--line:#2c3039;--ok:#4cc17a;--bad:#ff7a6e;--accent:#8ea2ff}}
        *{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
        header{padding:28px 32px 8px}h1{margin:0 0 4px;font-size:26px;letter-spacing:-.01em}.summary{margin:0;color:var(--muted)}
        .ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}code{font:12px ui-monospace,monospace}
        main{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:20px;padding:20px 32px 40px}
        .card{background:var(--card);border:1px solid var(--line);border-radius:14px;overflow:hidden;display:flex;flex-direction:column;box-shadow:0 1px 2px rgba(0,0,0,.05)}
        .visual{aspect-ratio:16/10;overflow:hidden;background:#0d0f13;display:flex;align-items:center;justify-content:center}
        .visual img,.visual video{width:100%;height:100%;object-fit:contain;display:block}.visual a{display:block;width:100%;height:100%}
        .live{position:relative}.live video.motion{position:absolute;inset:0;opacity:0;transition:opacity .15s;pointer-events:none}.live.playing video.motion{opacity:1}
        .live-badge{position:absolute;top:10px;left:10px;display:flex;align-items:center;gap:4px;padding:2px 7px 2px 5px;border-radius:6px;background:rgba(245,245,247,.78);color:#1d1d1f;font:600 11px/1.5 system-ui,-apple-system,sans-serif;letter-spacing:.08em;pointer-events:none}
        .placeholder{font-size:64px;color:#5d6472}.status-error .visual{background:repeating-linear-gradient(45deg,#2a1414,#2a1414 12px,#321919 12px,#321919 24px)}
        .body{padding:14px 16px 16px}h2{margin:0 0 6px;font-size:16px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
        .duplicate{margin:0 0 10px;font-size:13px;color:var(--muted)}.duplicate span{font-size:12px;padding:2px 8px;border-radius:99px;margin-right:4px;background:color-mix(in srgb,#d9a53a 22%,transparent);color:#e7b94f}.duplicate a{color:inherit}
        .badges{margin:0 0 10px;display:flex;gap:6px;flex-wrap:wrap}.badges span{font-size:12px;padding:2px 8px;border-radius:99px;background:var(--line);color:var(--muted)}
        .status-ready .status{background:color-mix(in srgb,var(--ok) 18%,transparent);color:var(--ok)}
        .status-error .status{background:color-mix(in srgb,var(--bad) 18%,transparent);color:var(--bad)}
        audio{width:100%;margin:0 0 10px}
        .error{border-left:4px solid var(--bad);background:color-mix(in srgb,var(--bad) 10%,transparent);padding:8px 12px;border-radius:6px;margin:0 0 12px}
        .error p{margin:0}.error .detail{display:block;color:var(--muted);font-size:13px;overflow-wrap:anywhere}
        .thumb{margin:0 0 10px;display:flex;align-items:center;gap:10px}.thumb img{height:48px;border-radius:6px;border:1px solid var(--line)}
        figcaption,.caption{font-size:12px;color:var(--muted)}.caption{margin:4px 0 10px}
        .trickplay{display:flex;gap:2px;overflow-x:auto;border-radius:6px}.tile{flex:none;background-repeat:no-repeat;border-radius:2px}
        table{border-collapse:collapse;width:100%;font-size:13px}th{text-align:left;font-weight:500;color:var(--muted);padding:3px 10px 3px 0;white-space:nowrap;vertical-align:top;width:1%}
        td{padding:3px 0;overflow-wrap:anywhere}tr+tr th,tr+tr td{border-top:1px solid var(--line)}
        details{margin-top:10px;font-size:12px}summary{cursor:pointer;color:var(--accent)}pre{white-space:pre-wrap;overflow-wrap:anywhere;max-height:240px;overflow:auto;background:var(--bg);padding:8px;border-radius:6px}
        """
}
