package tiered

import (
	"reflect"
	"time"
)

// How a Cache keeps the values handed to it (by Set, Warm or a loader) out
// of reach of whoever handed them over.
type copyMode uint8

const (
	copyNone   copyMode = iota // V holds no pointers, slices or maps: a copy of V is independent
	copyDeep                   // copy pointers, slices and maps; share strings, which never change
	copyDecode                 // decode what was written: V holds what reflection cannot copy
)

var timeType = reflect.TypeFor[time.Time]()

// copyModeOf decides, once per type, how values of t are kept.
func copyModeOf(t reflect.Type) copyMode {
	switch {
	case !mayAlias(t):
		return copyNone
	case deepCopyable(t, map[reflect.Type]bool{}):
		return copyDeep
	}
	return copyDecode
}

// mayAlias reports whether a value of type t can share memory with a copy
// of it: whether it holds pointers, maps, slices, interfaces, channels or
// functions. A time.Time's location pointer does not count: nobody changes
// a Location.
func mayAlias(t reflect.Type) bool {
	if t == timeType {
		return false
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && mayAlias(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if mayAlias(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// deepCopyable reports whether deepCopy can copy every value of t: every
// part that may alias is a pointer, slice, map or array of such parts, or
// an exported field (reflection cannot set unexported ones).
func deepCopyable(t reflect.Type, seen map[reflect.Type]bool) bool {
	if !mayAlias(t) || seen[t] {
		return true
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return deepCopyable(t.Elem(), seen)
	case reflect.Map:
		return deepCopyable(t.Key(), seen) && deepCopyable(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if mayAlias(f.Type) && (!f.IsExported() || !deepCopyable(f.Type, seen)) {
				return false
			}
		}
		return true
	}
	return false // interfaces, channels, functions
}

// deepCopy returns a copy of v that shares no memory anyone can change
// with it. V must be deepCopyable.
func deepCopy[V any](v V) V {
	var out V
	copyInto(reflect.ValueOf(&out).Elem(), reflect.ValueOf(&v).Elem())
	return out
}

func copyInto(dst, src reflect.Value) {
	t := src.Type()
	if !mayAlias(t) {
		dst.Set(src)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(t.Elem())
		copyInto(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(t, src.Len(), src.Len())
		for i := range src.Len() {
			copyInto(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(t, src.Len())
		for it := src.MapRange(); it.Next(); {
			k, e := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
			copyInto(k, it.Key())
			copyInto(e, it.Value())
			m.SetMapIndex(k, e)
		}
		dst.Set(m)
	case reflect.Array:
		for i := range src.Len() {
			copyInto(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		dst.Set(src) // every field, unexported ones included; then unshare
		for i := range t.NumField() {
			if mayAlias(t.Field(i).Type) {
				copyInto(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}
