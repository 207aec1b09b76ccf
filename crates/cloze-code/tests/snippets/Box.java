package org.example.util;

import java.util.List;
import java.util.concurrent.*;
import static java.lang.Math.max;

/** A doc comment. */
@SuppressWarnings("unchecked")
public class Box<T> extends Base implements Comparable<Box<T>> {
    private static final int LIMIT = 10;
    private final List<T> items;

    public Box(List<T> items) {
        this.items = items;
    }

    @Override
    public int compareTo(Box<T> other) {
        int total = 0; // a line comment
        for (T item : items) {
            total = max(total, item.hashCode());
        }
        final int limit = total;
        Runnable task = () -> helper(limit);
        items.forEach(x -> System.out.println(x));
        outer:
        while (total > LIMIT) {
            break outer;
        }
        return total - other.items.size();
    }

    String name(Object o, String... rest) {
        if (o instanceof String s) {
            return s + rest.length;
        }
        return List.of(rest).stream().map(String::valueOf).findFirst().orElse('c' + "x");
    }

    enum Color { RED, GREEN }
}
