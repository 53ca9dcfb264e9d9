package activities

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/tablecopy"
)

// Every error of the copy reaches the workflow as the typed error the
// docs (errors.md) name, with the copy's message.
func TestTableErrorTypes(t *testing.T) {
	for sentinel, typ := range map[error]string{
		tablecopy.ErrTableNotFound:    ErrTableNotFound,
		tablecopy.ErrTableExists:      ErrTableExists,
		tablecopy.ErrSchemaNotFound:   ErrInvalidRequest,
		tablecopy.ErrNotTransportable: ErrTableNotTransportable,
		tablecopy.ErrMismatch:         ErrTableMismatch,
		tablecopy.ErrDatadir:          ErrConfig,
	} {
		err := tableError(fmt.Errorf("%w: shop.orders", sentinel), "GTID 0-1-5")
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", sentinel)
		assert.Equal(t, typ, ae.Type(), "%v", sentinel)
		assert.True(t, ae.NonRetryable())
		assert.Contains(t, ae.Error(), "shop.orders")
	}
	err := tableError(fmt.Errorf("%w: shop.orders", tablecopy.ErrTableNotFound), "GTID 0-1-5")
	assert.Contains(t, err.Error(), "at GTID 0-1-5", "TableNotFound names the point")
	// Anything else stays retryable.
	err = tableError(errors.New("connection reset"), "")
	var ae *temporal.ApplicationError
	assert.False(t, errors.As(err, &ae))
}
