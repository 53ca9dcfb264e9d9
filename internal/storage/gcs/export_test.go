package gcs

// SetListPageSize sets the number of objects List requests per page, so
// that tests can exercise paging with few objects.
func SetListPageSize(b *Backend, n int) { b.pageSize = n }
