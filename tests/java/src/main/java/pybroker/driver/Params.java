package pybroker.driver;

import java.util.HashMap;
import java.util.Map;

/** The scenario's parameters, given on the command line as key=value words. */
final class Params {
    private final Map<String, String> values = new HashMap<>();

    Params(String[] args, int from) {
        for (int i = from; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got " + args[i]);
            }
            values.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
    }

    String str(String key) {
        String v = values.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing parameter " + key);
        }
        return v;
    }

    String str(String key, String fallback) {
        return values.getOrDefault(key, fallback);
    }

    int integer(String key, int fallback) {
        String v = values.get(key);
        return v == null ? fallback : Integer.parseInt(v);
    }

    long timeoutMs() {
        return Long.parseLong(str("timeout_ms", "30000"));
    }
}
