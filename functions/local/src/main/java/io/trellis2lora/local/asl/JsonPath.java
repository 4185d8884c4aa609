package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;

/**
 * Reference paths as the States Language uses them ({@code $}, {@code $.a.b}, {@code $.a[0]}, {@code $['a b']}).
 * Wildcards, filters and recursive descent are refused when the definition is loaded, so a definition that needs
 * them fails loudly here instead of behaving differently from Step Functions.
 */
final class JsonPath {
    private JsonPath() {
    }

    /** Segments of a path: String for a field, Integer for an array index. */
    static List<Object> parse(String path) {
        if (path == null || !path.startsWith("$")) {
            throw new IllegalArgumentException("'" + path + "' is not a reference path (must start with $)");
        }
        List<Object> segments = new ArrayList<>();
        int i = 1;
        while (i < path.length()) {
            char c = path.charAt(i);
            if (c == '.') {
                int j = i + 1;
                while (j < path.length() && path.charAt(j) != '.' && path.charAt(j) != '[') {
                    j++;
                }
                String name = path.substring(i + 1, j);
                if (name.isEmpty() || name.equals("*")) {
                    throw new IllegalArgumentException("unsupported path '" + path + "' (wildcards and '..' are not reference paths)");
                }
                segments.add(name);
                i = j;
            } else if (c == '[') {
                int close = path.indexOf(']', i);
                if (close < 0) {
                    throw new IllegalArgumentException("unclosed '[' in path '" + path + "'");
                }
                String inner = path.substring(i + 1, close).trim();
                if (inner.startsWith("'") && inner.endsWith("'") && inner.length() >= 2) {
                    segments.add(inner.substring(1, inner.length() - 1));
                } else if (inner.matches("\\d+")) {
                    segments.add(Integer.parseInt(inner));
                } else {
                    throw new IllegalArgumentException("unsupported path '" + path + "' ([" + inner + "] is not a reference)");
                }
                i = close + 1;
            } else {
                throw new IllegalArgumentException("unexpected '" + c + "' in path '" + path + "'");
            }
        }
        return segments;
    }

    /** The value at {@code path}; an absent path is a States.Runtime error, as in Step Functions. */
    static JsonNode read(JsonNode root, String path) throws AslError {
        JsonNode node = root;
        for (Object segment : parse(path)) {
            JsonNode next = null;
            if (segment instanceof String field && node != null && node.isObject()) {
                next = node.get(field);
            } else if (segment instanceof Integer index && node != null && node.isArray()) {
                next = node.get(index);
            }
            if (next == null) {
                throw AslError.runtime("the JSONPath '" + path + "' could not be found in the input '" + abbreviate(root) + "'");
            }
            node = next;
        }
        return node;
    }

    static boolean exists(JsonNode root, String path) {
        try {
            read(root, path);
            return true;
        } catch (AslError e) {
            return false;
        }
    }

    /** ResultPath semantics: {@code $} replaces the input; otherwise the value is placed in a copy of the input. */
    static JsonNode write(JsonNode root, String path, JsonNode value) throws AslError {
        List<Object> segments = parse(path);
        if (segments.isEmpty()) {
            return value;
        }
        if (!root.isObject()) {
            throw AslError.runtime("cannot apply ResultPath '" + path + "' to a non-object input");
        }
        ObjectNode copy = ((ObjectNode) root).deepCopy();
        ObjectNode node = copy;
        for (int k = 0; k < segments.size() - 1; k++) {
            if (!(segments.get(k) instanceof String field)) {
                throw AslError.runtime("ResultPath '" + path + "' may not index arrays");
            }
            JsonNode child = node.get(field);
            if (child == null || child.isNull()) {
                child = node.putObject(field);
            } else if (!child.isObject()) {
                throw AslError.runtime("ResultPath '" + path + "' runs into a non-object at '" + field + "'");
            }
            node = (ObjectNode) child;
        }
        Object last = segments.get(segments.size() - 1);
        if (!(last instanceof String field)) {
            throw AslError.runtime("ResultPath '" + path + "' may not index arrays");
        }
        node.set(field, value);
        return copy;
    }

    static String abbreviate(JsonNode node) {
        String s = node == null ? "null" : node.toString();
        return s.length() > 300 ? s.substring(0, 300) + "..." : s;
    }

    static ArrayNode array() {
        return JsonNodeFactory.instance.arrayNode();
    }
}
