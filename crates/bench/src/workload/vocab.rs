//! The prompt vocabulary: common English words that are each one cl100k_base token when written
//! with a leading space, so that a prompt of N word ids is N tokens to `brix sim` and to any
//! cl100k engine, and equal id runs are equal token blocks.
//!
//! The words are the 1,024 most frequent (by cl100k merge rank) lowercase dictionary words of
//! three or more letters, less word fragments and words a reader would not want in a benchmark
//! prompt. Being all letters, `" a b c"` splits into one pre-token per word, so a sequence of
//! words never merges across a boundary (the vocabulary tests check both facts with
//! `tiktoken-rs`).

/// The words; a prompt id `i` stands for `VOCAB[i % VOCAB.len()]`.
#[rustfmt::skip]
pub const VOCAB: &[&str] = &[
    "the", "and", "for", "this", "that", "with", "return", "you", "new", "from", "are", "class",
    "not", "was", "public", "have", "get", "can", "self", "all", "will", "your", "out", "but",
    "function", "set", "else", "more", "his", "they", "per", "data", "one", "name", "true", "end",
    "their", "private", "who", "time", "man", "which", "any", "false", "value", "about", "add",
    "string", "over", "type", "inter", "part", "work", "when", "use", "off", "other", "been", "had",
    "were", "file", "would", "our", "year", "some", "there", "said", "her", "like", "let", "also",
    "than", "static", "just", "result", "them", "into", "what", "list", "case", "first", "import",
    "act", "char", "only", "print", "its", "back", "need", "start", "user", "under", "then", "may",
    "how", "people", "should", "test", "make", "after", "right", "long", "array", "read", "form",
    "want", "number", "require", "key", "two", "size", "where", "while", "look", "could", "know",
    "hand", "most", "try", "now", "him", "break", "every", "point", "error", "text", "show", "find",
    "current", "play", "log", "see", "help", "these", "pass", "down", "even", "item", "did",
    "through", "last", "event", "again", "high", "line", "does", "before", "because", "state",
    "here", "final", "run", "very", "model", "way", "call", "well", "object", "default", "view",
    "many", "being", "good", "request", "child", "person", "style", "method", "expect", "found",
    "post", "such", "think", "much", "count", "check", "open", "next", "follow", "car", "game",
    "path", "each", "support", "own", "sign", "those", "system", "best", "same", "create", "made",
    "mark", "group", "world", "process", "main", "color", "report", "take", "day", "top", "free",
    "action", "index", "real", "build", "message", "art", "between", "table", "head", "must",
    "order", "say", "product", "double", "place", "information", "week", "program", "response",
    "code", "without", "still", "assert", "cap", "field", "team", "second", "going", "range",
    "fact", "home", "left", "direct", "allow", "page", "different", "around", "really", "image",
    "target", "both", "put", "level", "document", "local", "content", "float", "develop", "too",
    "great", "month", "super", "title", "context", "met", "life", "catch", "pay", "change",
    "position", "old", "book", "version", "three", "law", "base", "during", "console", "against",
    "power", "width", "label", "project", "element", "success", "date", "big", "map", "pop", "few",
    "ear", "match", "node", "another", "sit", "care", "effect", "fun", "leg", "service", "since",
    "full", "turn", "body", "something", "stand", "available", "block", "keep", "throw", "red",
    "control", "come", "custom", "source", "await", "ask", "output", "business", "might", "never",
    "hard", "height", "small", "access", "job", "address", "sum", "little", "port", "status",
    "update", "link", "given", "better", "feel", "already", "always", "parent", "got", "less",
    "account", "lot", "valid", "bit", "following", "sure", "search", "rest", "interest", "perform",
    "site", "won", "cell", "player", "cost", "total", "load", "clear", "row", "seem", "short",
    "override", "company", "done", "health", "children", "initial", "instance", "reason", "within",
    "design", "school", "consider", "include", "stop", "later", "client", "love", "able", "men",
    "give", "condition", "copy", "either", "important", "lead", "family", "option", "exist",
    "offer", "water", "step", "government", "display", "four", "far", "present", "room", "once",
    "continue", "talk", "grow", "mass", "mean", "until", "market", "area", "length", "kind",
    "light", "side", "example", "miss", "based", "plan", "away", "button", "experience", "render",
    "near", "country", "author", "specific", "along", "express", "begin", "win", "thing", "why",
    "single", "season", "possible", "sent", "command", "recent", "money", "told", "auto", "working",
    "query", "window", "least", "column", "record", "making", "close", "percent", "past", "write",
    "move", "special", "city", "tell", "select", "font", "course", "late", "amount", "enough",
    "looking", "hold", "property", "low", "para", "price", "today", "story", "meet", "sort",
    "thought", "task", "review", "switch", "above", "question", "word", "provide", "research",
    "publish", "cover", "whether", "employ", "large", "host", "role", "web", "deal", "problem",
    "press", "though", "ever", "actually", "million", "understand", "happen", "server", "often",
    "space", "password", "store", "format", "face", "save", "social", "major", "yet", "food", "bar",
    "send", "connection", "become", "global", "contact", "except", "certain", "character", "news",
    "device", "previous", "material", "below", "media", "fail", "black", "component", "added",
    "buy", "came", "delete", "card", "root", "handle", "getting", "claim", "air", "enter",
    "location", "night", "doing", "pick", "watch", "human", "tax", "girl", "strong", "interface",
    "house", "track", "application", "pack", "section", "wait", "together", "apply", "session",
    "fund", "several", "template", "subject", "history", "individual", "future", "mode", "took",
    "bad", "needs", "known", "seen", "border", "live", "variable", "provided", "hope", "young",
    "study", "network", "limit", "cut", "went", "fire", "across", "community", "official", "visit",
    "token", "particular", "learn", "mind", "quick", "comment", "background", "description",
    "represent", "series", "hot", "original", "bill", "frame", "draw", "comes", "filter", "remove",
    "front", "according", "virtual", "anything", "war", "early", "center", "language", "ago",
    "easy", "fig", "buffer", "due", "cannot", "white", "register", "period", "screen", "net",
    "common", "suggest", "accept", "random", "hit", "click", "implement", "among", "answer", "walk",
    "treat", "age", "five", "distributed", "friend", "clean", "header", "discuss", "issue", "land",
    "stream", "quality", "half", "simple", "empty", "cook", "everything", "nothing", "running",
    "share", "entry", "personal", "offset", "whole", "likely", "writing", "rate", "correct", "fall",
    "development", "believe", "collection", "similar", "taken", "son", "moment", "bring", "entire",
    "trying", "member", "foot", "board", "push", "please", "edit", "thread", "instead", "idea",
    "film", "teach", "phone", "active", "article", "almost", "sell", "connect", "feature", "via",
    "environment", "install", "complete", "general", "reserved", "icon", "party", "vector",
    "normal", "further", "music", "speed", "taking", "forward", "concern", "sender", "term",
    "potential", "probably", "enjoy", "weight", "exception", "module", "constructor", "favor",
    "loss", "engine", "parse", "stay", "lower", "perfect", "exact", "former", "six", "margin",
    "heart", "rather", "building", "security", "however", "inside", "president", "graph", "tag",
    "attempt", "round", "campaign", "energy", "profession", "behind", "raise", "policy", "third",
    "bed", "training", "prior", "exit", "release", "shall", "outside", "ground", "unique", "tree",
    "matter", "ball", "simply", "fast", "memory", "fit", "political", "industry", "extra", "wrong",
    "unit", "appear", "difficult", "coming", "quite", "everyone", "pretty", "longer", "menu",
    "currently", "effort", "actual", "fix", "performance", "higher", "itself", "significant",
    "respect", "progress", "mid", "resource", "direction", "additional", "sound", "statement",
    "alert", "contract", "soon", "join", "fill", "choose", "office", "transform", "hash", "flag",
    "note", "upon", "risk", "woman", "included", "cause", "focus", "multiple", "regard", "addition",
    "various", "receive", "increase", "commit", "leave", "align", "reading", "notice", "lock",
    "standard", "padding", "internal", "especially", "cross", "national", "script", "arch",
    "written", "platform", "force", "prevent", "living", "pattern", "entity", "useful", "tool",
    "feed", "popular", "impact", "train", "related", "technology", "scale", "score", "student",
    "average", "court", "container", "decision", "saw", "approach", "saying", "anyone", "song",
    "channel", "finally", "convert", "ways", "plus", "profile", "ready", "sense", "region", "deep",
    "reach", "counter", "damage", "lost", "himself", "dog", "paper", "staff", "themselves",
    "driver", "category", "oil", "stock", "modify", "stack", "bottom", "couple", "road", "avoid",
    "tab", "insert", "machine", "operation", "production", "operator", "argument", "establish",
    "movie", "activity", "license", "ability", "parameter", "pen", "choice", "flex", "wonder",
    "legal", "ten", "reference", "regular", "goal", "touch", "built", "worth", "natural",
    "associated", "storage", "travel", "grid", "bus", "login", "necessary", "respond", "financial",
    "evidence", "rule", "starting", "recently", "seek", "otherwise", "drop", "structure",
    "directly", "ensure", "serious", "customer", "door", "plant", "distance", "chance", "protect",
    "route", "primary", "inform", "led", "bank", "sample", "shape", "sleep", "sold", "safe",
    "remember", "scene", "park", "yourself", "wrote", "equal", "serial", "middle", "quickly",
    "proper", "matrix", "green", "paint", "layer", "core", "expert", "directory", "election",
    "beautiful", "secret", "origin", "management", "setting", "happy", "finish", "camera", "stuff",
    "military", "sale", "mention", "town", "solution", "slow", "blue", "cast", "dark", "package",
    "nor", "club", "loop", "complex", "analysis", "deliver", "computer", "mobile", "owner",
    "treatment", "leading", "flow", "involved", "shift", "nice", "floor", "wish", "stage", "solid",
    "meeting", "editor", "medical", "hour", "controller", "speak", "mount", "felt", "modern",
    "cache", "roll", "growth", "mix", "letter", "attention", "collect", "situation", "knowledge",
    "drive", "photo", "gave", "shot", "mother", "morning", "trade", "piece", "completely",
    "practice", "selection", "reader", "gold", "fair",
];

/// The vocabulary's size as a word-id bound, so generators draw ids that [`text`] maps 1:1.
pub const VOCAB_LEN: u32 = VOCAB.len() as u32;

/// The word an id stands for (ids wrap), so callers never index the table themselves.
pub fn word(id: u32) -> &'static str {
    VOCAB[(id % VOCAB_LEN) as usize]
}

/// The prompt's text: `" " + word` for each id, which the live mode sends and any cl100k
/// tokenizer reads back as exactly one token per id.
pub fn text(prompt: &[u32]) -> String {
    let mut out = String::with_capacity(prompt.len() * 8);
    for &id in prompt {
        out.push(' ');
        out.push_str(word(id));
    }
    out
}
